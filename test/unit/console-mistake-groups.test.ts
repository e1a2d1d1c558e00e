import fc from 'fast-check';
import { groupMistakes, type MistakeLike } from '../../console/src/mistake-groups';

interface Example {
  example_id: string;
  class: string;
  file_name: string;
  evaluation: { predicted_class: string; correct: boolean };
}
type Mistake = MistakeLike<Example>;

/** The console's "Needs a look" cards (console/src/mistake-groups.ts): the API's findings, each shown once. */

const example = (id: number, cls: string, correct: boolean): Example => ({
  example_id: `ex_${id}`,
  class: cls,
  file_name: `${cls}/${id}.jpg`,
  evaluation: { predicted_class: correct ? cls : 'other', correct },
});

/** Up to 8 examples, each mislabelled at most once, each pair at most once: what one page of mistakes can hold. */
const pages = fc
  .array(fc.record({ cls: fc.constantFrom('dogs', 'eagles', 'cats'), correct: fc.boolean() }), {
    minLength: 2,
    maxLength: 8,
  })
  .chain((looks) => {
    const examples = looks.map((l, i) => example(i, l.cls, l.correct));
    const n = examples.length;
    const mislabeled = fc.uniqueArray(fc.nat(n - 1)).map((ids) =>
      ids.map((i): Mistake => ({
        kind: 'mislabeled',
        confidence: 0.5 + (i % 5) / 10,
        example: examples[i],
        predicted_class: i % 3 === 0 ? null : 'other',
      })),
    );
    const pairs = fc
      .uniqueArray(
        fc
          .tuple(fc.nat(n - 1), fc.nat(n - 1), fc.double({ min: 0, max: 0.02, noNaN: true }))
          .filter(([a, b]) => a !== b),
        { selector: ([a, b]) => `${Math.min(a, b)}-${Math.max(a, b)}` },
      )
      .map((ps) =>
        ps.map(([a, b, d]): Mistake => ({
          kind: 'cross_class_duplicate',
          confidence: 1 - d,
          examples: [examples[a], examples[b]],
          distance: d,
        })),
      );
    // The API's order: most confident first (the interleaving of the two kinds is part of what varies).
    return fc
      .tuple(mislabeled, pairs)
      .chain(([m, p]) => fc.shuffledSubarray([...m, ...p], { minLength: m.length + p.length }));
  });

describe('groupMistakes: one card per example', () => {
  it('shows every finding exactly once, on the card of an example it is about', () => {
    fc.assert(
      fc.property(pages, (mistakes) => {
        const groups = groupMistakes(mistakes);
        const ids = groups.map((g) => g.example.example_id);
        expect(new Set(ids).size).toBe(ids.length);
        for (const m of mistakes) {
          if (m.kind === 'mislabeled') {
            const holding = groups.filter((g) => g.mislabeled && g.example.example_id === m.example.example_id);
            expect(holding).toHaveLength(1);
            expect(holding[0].mislabeled).toEqual({ predicted: m.predicted_class, confidence: m.confidence });
          } else {
            const [a, b] = m.examples.map((e) => e.example_id);
            const shown = groups.flatMap((g) =>
              g.duplicates
                .filter((d) => d.distance === m.distance)
                .map((d) => [g.example.example_id, d.example.example_id].sort().join('|')),
            );
            expect(shown.filter((s) => s === [a, b].sort().join('|'))).toHaveLength(1);
          }
        }
        const findings = groups.reduce((n, g) => n + g.duplicates.length + (g.mislabeled ? 1 : 0), 0);
        expect(findings).toBe(mistakes.length);
        // A card's confidence is its most confident finding's.
        for (const g of groups) {
          const own = [...g.duplicates.map((d) => 1 - d.distance), g.mislabeled?.confidence ?? 0];
          expect(g.confidence).toBeCloseTo(Math.max(...own), 12);
        }
      }),
    );
  });

  it('orders the cards by their first finding, as the API ordered the findings', () => {
    fc.assert(
      fc.property(pages, (mistakes) => {
        const indexOf = (g: ReturnType<typeof groupMistakes>[number]) =>
          Math.min(
            ...mistakes.flatMap((m, i) => {
              const id = g.example.example_id;
              if (m.kind === 'mislabeled') return g.mislabeled && m.example.example_id === id ? [i] : [];
              const ids = m.examples.map((e) => e.example_id);
              const onCard = g.duplicates.some(
                (d) => d.distance === m.distance && ids.includes(d.example.example_id) && ids.includes(id),
              );
              return onCard ? [i] : [];
            }),
          );
        const order = groupMistakes(mistakes).map(indexOf);
        expect([...order].sort((x, y) => x - y)).toEqual(order);
      }),
    );
  });

  it('puts a planted photo and all the pictures it nearly copies on one card', () => {
    const planted = example(99, 'dogs', false);
    const eagles = Array.from({ length: 12 }, (_, i) => example(i, 'eagles', true));
    const mistakes: Mistake[] = [
      ...eagles.map((e, i): Mistake => ({
        kind: 'cross_class_duplicate',
        confidence: 1 - 0.004 - i / 1000,
        examples: [e, planted],
        distance: 0.004 + i / 1000,
      })),
      { kind: 'mislabeled', confidence: 0.93, example: planted, predicted_class: 'eagles' },
    ];
    const groups = groupMistakes(mistakes);
    expect(groups).toHaveLength(1);
    expect(groups[0].example).toBe(planted);
    expect(groups[0].mislabeled).toEqual({ predicted: 'eagles', confidence: 0.93 });
    expect(groups[0].duplicates.map((d) => d.example)).toEqual(eagles);
  });
});
