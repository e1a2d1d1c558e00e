/** One of the 80 COCO object categories, with its `type_hierarchy` under its COCO supercategory. */
export interface CocoClass {
  name: string;
  supercategory: string;
  /** `/<supercategory>/<name>`; `/person` for person, which is its own supercategory. */
  type_hierarchy: string;
}

/**
 * COCO 2017 categories and supercategories, official spellings, in the detector's class-index order
 * (the 80 used categories in ascending COCO id, as darknet's coco.names lists them).
 */
const CATEGORIES: ReadonlyArray<readonly [supercategory: string, names: string[]]> = [
  ['person', ['person']],
  ['vehicle', ['bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat']],
  ['outdoor', ['traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench']],
  ['animal', ['bird', 'cat', 'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe']],
  ['accessory', ['backpack', 'umbrella', 'handbag', 'tie', 'suitcase']],
  [
    'sports',
    [
      'frisbee',
      'skis',
      'snowboard',
      'sports ball',
      'kite',
      'baseball bat',
      'baseball glove',
      'skateboard',
      'surfboard',
      'tennis racket',
    ],
  ],
  ['kitchen', ['bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl']],
  ['food', ['banana', 'apple', 'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake']],
  ['furniture', ['chair', 'couch', 'potted plant', 'bed', 'dining table', 'toilet']],
  ['electronic', ['tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone']],
  ['appliance', ['microwave', 'oven', 'toaster', 'sink', 'refrigerator']],
  ['indoor', ['book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush']],
];

export const COCO_CLASSES: readonly CocoClass[] = CATEGORIES.flatMap(([supercategory, names]) =>
  names.map((name) => ({
    name,
    supercategory,
    type_hierarchy: name === supercategory ? `/${name}` : `/${supercategory}/${name}`,
  })),
);
