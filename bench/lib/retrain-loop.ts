import type { PrebuiltForm, WatsonClient } from './watson-client';

const READY_TIMEOUT_MS = 180_000;
const POLL_MS = 100;

interface ClassifyAnswer {
  images: Array<{ classifiers?: Array<{ classifier_id: string }> }>;
}

/**
 * Keeps a classifier retraining: POST update with the next fresh zip, poll until
 * `ready`, repeat, until stopped or the zips run out (so it is bounded). Each
 * round also classifies once while `retraining`, checking that the previous
 * version still answers.
 */
export class RetrainLoop {
  /** [update sent, ready seen] of every finished round, in performance.now() ms. */
  readonly rounds: Array<[number, number]> = [];
  /** When each update was sent (the round in progress included), in performance.now() ms. */
  readonly updatesSent: number[] = [];
  classifyChecksPassed = 0;
  private stopping = false;
  private running?: Promise<void>;
  private firstAccepted?: Promise<void>;

  constructor(
    private readonly client: WatsonClient,
    private readonly classifierId: string,
    private readonly zips: Array<Record<string, Buffer>>,
    private readonly classifyForm: PrebuiltForm,
  ) {}

  /** Starts the loop; resolves once the first update was accepted. */
  start(): Promise<void> {
    let accepted!: () => void;
    this.firstAccepted = new Promise((resolve) => (accepted = resolve));
    this.running = this.loop(accepted);
    return Promise.race([this.firstAccepted, this.running]);
  }

  /** Lets the round in progress finish, then ends the loop. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
  }

  get roundsLeft(): number {
    return this.zips.length;
  }

  /** Share of [from, to] during which a retrain was under way. */
  coverage(from: number, to: number): number {
    const busy = this.rounds.reduce(
      (sum, [start, end]) => sum + Math.max(0, Math.min(end, to) - Math.max(start, from)),
      0,
    );
    return Math.round((busy / (to - from)) * 1000) / 1000;
  }

  private async loop(accepted: () => void): Promise<void> {
    while (!this.stopping && this.zips.length > 0) {
      const zips = this.zips.shift()!;
      const sent = performance.now();
      this.updatesSent.push(sent);
      const view = await this.client.updateClassifier(this.classifierId, zips);
      accepted();
      if (view.status === 'retraining') await this.checkPreviousVersionAnswers();
      await this.client.waitUntilReady(this.classifierId, READY_TIMEOUT_MS, POLL_MS);
      this.rounds.push([sent, performance.now()]);
    }
  }

  private async checkPreviousVersionAnswers(): Promise<void> {
    const answer = await this.client.classify<ClassifyAnswer>(this.classifyForm);
    const applied = answer.images[0]?.classifiers?.map((c) => c.classifier_id) ?? [];
    if (!applied.includes(this.classifierId)) {
      throw new Error(
        `classify during retraining did not apply ${this.classifierId}: ${JSON.stringify(answer).slice(0, 300)}`,
      );
    }
    this.classifyChecksPassed++;
  }
}
