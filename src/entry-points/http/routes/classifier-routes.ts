import { Router, type NextFunction, type Request, type Response } from 'express';
import type { ServiceContext } from '../../../domain/service-context';
import { exportClassifierModel } from '../../../domain/export-model';
import {
  createClassifier,
  deleteClassifier,
  getClassifier,
  listClassifiers,
  updateClassifier,
} from '../../../domain/manage-classifiers';
import { customerIdFromMetadata } from '../../../domain/customer-id';
import { deleteUserData } from '../../../domain/forget-customer-data';
import { activateVersion, listVersions } from '../../../domain/manage-versions';
import { callbackSecret, rotateCallbackSecret } from '../../../domain/callbacks';
import type { UploadedFile } from '../../../domain/training-form';
import { listQuerySchema, parseRequest } from '../../../domain/api-schemas';
import type { UploadRoute } from '../multipart';

/**
 * `X-Watson-Metadata: customer_id=…` labels uploaded data for DELETE /v3/user_data. Read before
 * the upload, so a label that cannot be stored is refused without reading the body (hence the
 * connection closes); the handler finds it in res.locals.customerId.
 */
function readCustomerLabel(req: Request, res: Response, next: NextFunction) {
  try {
    res.locals.customerId = customerIdFromMetadata(req.headersDistinct['x-watson-metadata']);
  } catch (error) {
    res.setHeader('Connection', 'close');
    throw error;
  }
  next();
}
const customerIdOf = (res: Response): string | null => res.locals.customerId;

const filesOf = (req: Request): UploadedFile[] => (Array.isArray(req.files) ? req.files : []);
const owner = (req: Request) => req.ownerId!;
const idParam = (req: Request) => String(req.params.classifierId);

export function classifierRoutes(ctx: ServiceContext, upload: UploadRoute) {
  const router = Router();

  router.post(
    '/classifiers',
    readCustomerLabel,
    ...upload(async (req, res) => {
      res.json(
        await createClassifier(ctx, {
          ownerId: owner(req),
          name: req.body?.name,
          files: filesOf(req),
          customerId: customerIdOf(res),
          callbackUrl: req.body?.callback_url,
        }),
      );
    }),
  );

  router.get('/classifiers', async (req, res) => {
    const { verbose } = parseRequest(listQuerySchema, { verbose: req.query.verbose });
    res.json(await listClassifiers(ctx, { ownerId: owner(req), verbose }));
  });

  router.get('/classifiers/:classifierId', async (req, res) => {
    res.json(await getClassifier(ctx, { ownerId: owner(req), classifierId: idParam(req) }));
  });

  router.post(
    '/classifiers/:classifierId',
    readCustomerLabel,
    ...upload(async (req, res) => {
      res.json(
        await updateClassifier(ctx, {
          ownerId: owner(req),
          classifierId: idParam(req),
          files: filesOf(req),
          customerId: customerIdOf(res),
          callbackUrl: req.body?.callback_url,
        }),
      );
    }),
  );

  router.delete('/classifiers/:classifierId', async (req, res) => {
    await deleteClassifier(ctx, { ownerId: owner(req), classifierId: idParam(req) });
    res.json({});
  });

  // The .mlmodel Watson offered; `version_id` (an extension) picks another version than the current one.
  router.get('/classifiers/:classifierId/core_ml_model', async (req, res) => {
    const model = await exportClassifierModel(ctx, {
      ownerId: owner(req),
      classifierId: idParam(req),
      versionId: req.query.version_id,
      format: 'coreml',
    });
    res
      .attachment(model.fileName)
      .type('application/octet-stream')
      .send(Buffer.from(model.bytes.buffer, model.bytes.byteOffset, model.bytes.byteLength));
  });

  // Extension: the same version as one self-contained ONNX model.
  router.get('/classifiers/:classifierId/onnx_model', async (req, res) => {
    const model = await exportClassifierModel(ctx, {
      ownerId: owner(req),
      classifierId: idParam(req),
      versionId: req.query.version_id,
      format: 'onnx',
    });
    res
      .attachment(model.fileName)
      .type('application/octet-stream')
      .send(Buffer.from(model.bytes.buffer, model.bytes.byteOffset, model.bytes.byteLength));
  });

  router.delete('/user_data', async (req, res) => {
    await deleteUserData(ctx, { ownerId: owner(req), customerId: req.query.customer_id });
    res.status(202).end();
  });

  router.get('/classifiers/:classifierId/versions', async (req, res) => {
    res.json(await listVersions(ctx, { ownerId: owner(req), classifierId: idParam(req) }));
  });

  router.post('/classifiers/:classifierId/versions/:versionId/activate', async (req, res) => {
    res.json(
      await activateVersion(ctx, {
        ownerId: owner(req),
        classifierId: idParam(req),
        versionId: String(req.params.versionId),
        discardPending: req.query.discard_pending,
      }),
    );
  });

  router.get('/callback_secret', async (req, res) => {
    res.json(await callbackSecret(ctx, { ownerId: owner(req) }));
  });

  router.post('/callback_secret', async (req, res) => {
    res.json(await rotateCallbackSecret(ctx, { ownerId: owner(req) }));
  });

  return router;
}
