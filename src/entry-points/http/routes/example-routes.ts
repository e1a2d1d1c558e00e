import express, { Router, type Request } from 'express';
import type { ServiceContext } from '../../../domain/service-context';
import { exampleThumbnail, listExamples, listMistakes } from '../../../domain/review-examples';
import { changeExamples, moveExample, removeExample } from '../../../domain/change-examples';

const owner = (req: Request) => req.ownerId!;
const idParam = (req: Request) => String(req.params.classifierId);
const exampleParam = (req: Request) => String(req.params.exampleId);

/** JSON bodies of the example changes: a list of at most MAX_EXAMPLE_CHANGES ids fits well within this. */
const jsonBody = express.json({ limit: '256kb', strict: false, type: () => true });

/**
 * Extension (issue 23): a classifier's examples, the ones its serving version gets wrong, their
 * thumbnails, and removing or moving them (applied as the next version).
 */
export function exampleRoutes(ctx: ServiceContext) {
  const router = Router();

  router.get('/classifiers/:classifierId/examples', async (req, res) => {
    res.json(await listExamples(ctx, { ownerId: owner(req), classifierId: idParam(req), query: req.query }));
  });

  router.get('/classifiers/:classifierId/examples/mistakes', async (req, res) => {
    res.json(await listMistakes(ctx, { ownerId: owner(req), classifierId: idParam(req), query: req.query }));
  });

  router.get('/classifiers/:classifierId/examples/:exampleId/thumbnail', async (req, res) => {
    const thumbnail = await exampleThumbnail(ctx, {
      ownerId: owner(req),
      classifierId: idParam(req),
      exampleId: exampleParam(req),
      ifNoneMatch: req.headers['if-none-match'],
    });
    res.setHeader('ETag', thumbnail.etag);
    // Owner-only content: private (no shared cache keeps it); the ETag makes revalidation cheap.
    res.setHeader('Cache-Control', `private, max-age=${thumbnail.maxAgeSeconds}`);
    if (thumbnail.notModified) {
      res.status(304).end();
      return;
    }
    res.type('image/jpeg').send(thumbnail.jpeg);
  });

  router.post('/classifiers/:classifierId/examples/changes', jsonBody, async (req, res) => {
    res.json(await changeExamples(ctx, { ownerId: owner(req), classifierId: idParam(req), body: req.body }));
  });

  router.delete('/classifiers/:classifierId/examples/:exampleId', async (req, res) => {
    res.json(
      await removeExample(ctx, { ownerId: owner(req), classifierId: idParam(req), exampleId: exampleParam(req) }),
    );
  });

  router.post('/classifiers/:classifierId/examples/:exampleId/move', jsonBody, async (req, res) => {
    res.json(
      await moveExample(ctx, {
        ownerId: owner(req),
        classifierId: idParam(req),
        exampleId: exampleParam(req),
        body: req.body,
      }),
    );
  });

  return router;
}
