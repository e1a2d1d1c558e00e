import { BenchImages } from './bench-images';
import { RedisNotAnsweringError, startBenchService, type BenchService } from './bench-service';

/**
 * The frame of a service bench: say where the images come from, boot the
 * service in its own process, run, always stop it (data dir and Redis keys
 * removed), then print the figures as the last line, one JSON object.
 * Exits 1 with a hint when no Redis answers.
 */
export function benchMain(run: (service: BenchService, images: BenchImages) => Promise<object>): void {
  const main = async () => {
    const images = BenchImages.open();
    console.log(images.describe());
    let service: BenchService;
    try {
      service = await startBenchService();
    } catch (error) {
      if (!(error instanceof RedisNotAnsweringError)) throw error;
      console.log(error.message);
      process.exit(1);
    }
    console.log(`service (pid ${service.pid}, worker pid ${service.workerPid}) at ${service.url}`);
    let figures: object;
    try {
      figures = await run(service, images);
    } finally {
      await service.stop();
    }
    console.log(JSON.stringify(figures));
  };
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
