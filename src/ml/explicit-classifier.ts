import type { ImageAnalysis } from './embedder';
import type { BuiltinClass } from './types';

/** Watson's `explicit` built-in: one class scoring explicit content; nothing when the pack has no explicit head. */
export function explicitClasses(analysis: ImageAnalysis): BuiltinClass[] {
  return analysis.explicit === undefined ? [] : [{ class: 'explicit', score: analysis.explicit }];
}
