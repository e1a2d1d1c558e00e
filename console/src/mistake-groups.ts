/*
 * Plain logic with no import, so the unit tests (compiled without the DOM and without the generated
 * api-types.ts) can load it: the shapes are the parts of the API's Example and Mistake it reads.
 */

/** What grouping reads of an example (the API's `Example` has more). */
export interface ExampleLike {
  example_id: string;
  evaluation?: { correct: boolean };
}

/** One entry of `GET …/examples/mistakes` (the API's `Mistake`). */
export type MistakeLike<Example extends ExampleLike> =
  | { kind: 'mislabeled'; confidence: number; example: Example; predicted_class: string | null }
  | { kind: 'cross_class_duplicate'; confidence: number; examples: Example[]; distance: number };

/** One card of "Needs a look": an example, and what the evaluation found about it. */
export interface MistakeGroup<Example extends ExampleLike> {
  example: Example;
  /** Its out-of-fold prediction disagrees with its label. */
  mislabeled?: { predicted: string | null; confidence: number };
  /** Nearly the same pictures filed under another class (or the negatives). */
  duplicates: Array<{ example: Example; distance: number }>;
  /** The highest confidence of its findings. */
  confidence: number;
}

/**
 * The mistakes as cards, one per example they are about, in the order the API gave them (most confident
 * first). A picture planted in the wrong class is usually both mislabelled and a near-duplicate of many
 * examples of its true class; one card with all of them beside it reads better than a dozen pairs. A
 * pair goes to the card of the example it shares with a card already made, else to the card of the
 * example named in more findings (on a tie, the one the evaluation got wrong, else the first).
 */
export function groupMistakes<Example extends ExampleLike>(
  mistakes: Array<MistakeLike<Example>>,
): Array<MistakeGroup<Example>> {
  const mentions = new Map<string, number>();
  const mention = (e: Example) => mentions.set(e.example_id, (mentions.get(e.example_id) ?? 0) + 1);
  for (const m of mistakes) (m.kind === 'mislabeled' ? [m.example] : m.examples).forEach(mention);
  const groups = new Map<string, MistakeGroup<Example>>();
  const groupOf = (e: Example) => {
    let g = groups.get(e.example_id);
    if (!g) groups.set(e.example_id, (g = { example: e, duplicates: [], confidence: 0 }));
    return g;
  };
  const weight = (e: Example) => (mentions.get(e.example_id) ?? 0) * 2 + (e.evaluation?.correct === false ? 1 : 0);
  for (const m of mistakes) {
    if (m.kind === 'mislabeled') {
      const g = groupOf(m.example);
      g.mislabeled = { predicted: m.predicted_class, confidence: m.confidence };
      g.confidence = Math.max(g.confidence, m.confidence);
      continue;
    }
    const [a, b] = m.examples;
    const anchor = groups.has(a.example_id) ? a : groups.has(b.example_id) ? b : weight(b) > weight(a) ? b : a;
    const g = groupOf(anchor);
    g.duplicates.push({ example: anchor === a ? b : a, distance: m.distance });
    g.confidence = Math.max(g.confidence, m.confidence);
  }
  return [...groups.values()];
}
