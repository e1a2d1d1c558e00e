import { Router, type Request, type Response } from 'express';
import { badRequest } from '../../../errors';
import { classifyImages, type ClassifyContext, type UploadedImagesFile } from '../../../domain/classify-images';
import { parseClassifyParameters } from '../../../domain/classify-request';
import type { UploadRoute } from '../multipart';

function imagesFileOf(req: Request): UploadedImagesFile | undefined {
  const files = Array.isArray(req.files) ? req.files : [];
  const unexpected = files.find((f) => f.fieldname !== 'images_file');
  if (unexpected) {
    throw badRequest(`Unexpected file field '${unexpected.fieldname}'. Send the image or zip as 'images_file'.`);
  }
  if (files.length > 1)
    throw badRequest("Send one 'images_file' per request: a single image or a zip of up to 20 images.");
  const [file] = files;
  return file && { path: file.path, originalName: file.originalname, size: file.size };
}

const FORM_ONLY_PARAMETERS = ['classifier_ids', 'owners', 'threshold'];

export function classifyRoutes(ctx: ClassifyContext, upload: UploadRoute) {
  const router = Router();
  const answer = async (
    res: Response,
    ownerId: string,
    fields: Record<string, unknown>,
    file?: UploadedImagesFile,
    ignoredQueryParameters: string[] = [],
  ) => {
    const result = await classifyImages(ctx, {
      ownerId,
      params: parseClassifyParameters(fields),
      file,
      ignoredQueryParameters,
    });
    // Answers are in English whatever Accept-Language asks for.
    res.setHeader('Content-Language', 'en');
    res.status(result.status).json(result.body);
  };

  router.post(
    '/classify',
    ...upload(async (req, res) => {
      // Watson read these only from the form on POST; old SDKs sent them in the query string, where they are ignored.
      const ignored = FORM_ONLY_PARAMETERS.filter((name) => req.query[name] !== undefined);
      await answer(res, req.ownerId!, req.body ?? {}, imagesFileOf(req), ignored);
    }),
  );
  router.get('/classify', async (req, res) => {
    const { url, classifier_ids, owners, threshold, parameters } = req.query;
    await answer(res, req.ownerId!, { url, classifier_ids, owners, threshold, parameters });
  });
  return router;
}
