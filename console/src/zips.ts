/**
 * Turns what a person drops on a class slot into one zip for the API: a zip is taken as it is (its
 * images counted from its directory), images and folders of images are zipped here with fflate.
 * fflate's synchronous calls are used on purpose: its async ones start workers from blob: URLs,
 * which the console's content security policy forbids.
 */
import { unzipSync, zipSync, type Zippable } from 'fflate';

export interface PreparedZip {
  blob: Blob;
  /** What the person picked, for display: the zip's name, or the folder that was zipped here. */
  label: string;
  /** A class name suggested by the zip's or folder's name. */
  suggestedName: string;
  /** Images found by name; undefined when the zip could not be read here (the server decides). */
  images: number | undefined;
  bytes: number;
}

const IMAGE_NAME = /\.(jpe?g|png|gif|tiff?|webp)$/i;

/** Counts like the service: images by extension, skipping `__MACOSX/` and hidden files. */
export function looksLikeImage(path: string): boolean {
  const base = path.split('/').pop() ?? '';
  return (
    IMAGE_NAME.test(base) && !base.startsWith('.') && !path.startsWith('__MACOSX/') && !path.includes('/__MACOSX/')
  );
}

const isZip = (file: File) =>
  /\.zip$/i.test(file.name) || file.type === 'application/zip' || file.type === 'application/x-zip-compressed';

/** Path of a file inside what was dropped: webkitRelativePath for folder pickers, else its name. */
type PickedFile = { file: File; path: string };

/** Reads every file of a drop, walking into dropped folders. */
export async function filesOfDrop(transfer: DataTransfer): Promise<PickedFile[]> {
  const entries = Array.from(transfer.items)
    .map((item) => item.webkitGetAsEntry?.())
    .filter((entry): entry is FileSystemEntry => !!entry);
  if (entries.length === 0) return Array.from(transfer.files).map((file) => ({ file, path: file.name }));
  const out: PickedFile[] = [];
  for (const entry of entries) await walk(entry, out);
  return out;
}

async function walk(entry: FileSystemEntry, out: PickedFile[]): Promise<void> {
  const path = entry.fullPath.replace(/^\//, '');
  if (entry.isFile) {
    const file = await new Promise<File>((resolve, reject) => (entry as FileSystemFileEntry).file(resolve, reject));
    out.push({ file, path });
    return;
  }
  const reader = (entry as FileSystemDirectoryEntry).createReader();
  // readEntries answers in batches until it returns an empty one.
  for (;;) {
    const batch = await new Promise<FileSystemEntry[]>((resolve, reject) => reader.readEntries(resolve, reject));
    if (batch.length === 0) break;
    for (const child of batch) await walk(child, out);
  }
}

export function filesOfInput(list: FileList | null): PickedFile[] {
  return Array.from(list ?? []).map((file) => ({ file, path: file.webkitRelativePath || file.name }));
}

/** Letters a Watson class name may not hold, replaced in suggestions. */
export const FORBIDDEN_CLASS_CHARACTERS = /[$*\-{}\\|/'"`[\]]/g;

function suggestion(name: string): string {
  return name
    .replace(/\.zip$/i, '')
    .replace(FORBIDDEN_CLASS_CHARACTERS, '_')
    .trim();
}

/** Builds the zip for one slot; throws an Error whose message says what to drop instead. */
export async function prepareExamples(picked: PickedFile[]): Promise<PreparedZip> {
  if (picked.length === 0)
    throw new Error('Nothing was dropped. Drop a zip of images, some images, or a folder of images.');
  const zips = picked.filter((p) => isZip(p.file));
  if (zips.length > 0) {
    if (picked.length > 1)
      throw new Error('Drop one zip per slot, or images and folders of images (they are zipped here), not both.');
    const { file } = zips[0];
    let images: number | undefined = 0;
    try {
      unzipSync(new Uint8Array(await file.arrayBuffer()), {
        filter: (entry) => {
          if (looksLikeImage(entry.name)) images!++;
          return false; // count from the directory only; nothing is inflated
        },
      });
    } catch {
      images = undefined;
    }
    return { blob: file, label: file.name, suggestedName: suggestion(file.name), images, bytes: file.size };
  }
  const images = picked.filter(
    (p) => looksLikeImage(p.path) || (p.file.type.startsWith('image/') && !p.file.name.startsWith('.')),
  );
  if (images.length === 0)
    throw new Error('None of the dropped files is an image (JPEG, PNG, GIF, TIFF or WebP) or a zip.');
  const entries: Zippable = {};
  for (const { file, path } of images) {
    let name = path;
    for (let n = 2; name in entries; n++) name = path.replace(/(\.[^.]*)?$/, `-${n}$1`);
    // Level 0: photos are compressed already; storing keeps it instant.
    entries[name] = [new Uint8Array(await file.arrayBuffer()), { level: 0 }];
  }
  const bytes = zipSync(entries);
  const folder = images[0].path.includes('/') ? images[0].path.split('/')[0] : '';
  const blob = new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'application/zip' });
  return {
    blob,
    label: folder ? `${folder}/ zipped here` : 'images zipped here',
    suggestedName: suggestion(folder),
    images: images.length,
    bytes: blob.size,
  };
}
