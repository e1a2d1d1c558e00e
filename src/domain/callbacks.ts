import crypto from 'node:crypto';
import { badRequest } from '../errors';
import type { CallbackJobData, CallbackQueue } from '../data-access/redis/callback-queue';
import type { CallbackRepository } from '../data-access/db/callback-repository';
import { postCallback } from '../data-access/outbound/callback-sender';
import type { ClassifierRepository } from '../data-access/db/classifier-repository';
import { checkOutgoingUrl, UrlFetchError } from '../data-access/outbound/url-policy';
import type { Logger } from '../logger';

export const MAX_CALLBACK_URL_LENGTH = 2048;
/** `sha256=<hex HMAC-SHA256 of the raw body, keyed with the owner's callback secret>`. */
export const SIGNATURE_HEADER = 'x-callback-signature-256';
/** The delivery id: the same on every retry of one delivery, so a receiver can drop repeats. */
export const DELIVERY_HEADER = 'x-callback-delivery';

/** The signature header's value for a body: `sha256=` and the hex HMAC-SHA256 keyed with the secret (as UTF-8). */
export function signCallbackBody(secret: string, body: string): string {
  return `sha256=${crypto.createHmac('sha256', secret).update(body, 'utf8').digest('hex')}`;
}

/**
 * Reads the optional `callback_url` form field of a create or update: undefined when absent,
 * null when sent empty (remove the callback), else the URL after the classify URL rules
 * (http or https, at most 2048 characters, no user:password, a host that resolves to public
 * addresses unless ALLOW_PRIVATE_URLS).
 * @throws ApiError 400 saying what to change.
 */
export async function parseCallbackUrl(
  value: unknown,
  allowPrivateNetworks: boolean,
): Promise<string | null | undefined> {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') {
    throw badRequest("The field 'callback_url' must be sent once, as plain text: an http:// or https:// URL.");
  }
  const url = value.trim();
  if (url === '') return null;
  if (url.length > MAX_CALLBACK_URL_LENGTH) {
    throw badRequest(
      `The callback_url is ${url.length} characters long; at most ${MAX_CALLBACK_URL_LENGTH} are allowed.`,
    );
  }
  // What the URL itself breaks is said before its host is looked up: that answer must not wait for DNS, or depend on it.
  if (URL.canParse(url)) {
    const parsed = new URL(url);
    if (parsed.username || parsed.password) {
      throw badRequest(
        'The callback_url contains a user name or password. Leave them out: callbacks are signed (X-Callback-Signature-256) instead.',
      );
    }
  }
  try {
    return (await checkOutgoingUrl(url, { allowPrivateNetworks })).url.href;
  } catch (error) {
    if (error instanceof UrlFetchError) throw badRequest(`The callback_url cannot be used: ${error.description}`);
    throw error;
  }
}

export interface CallbackDeliveryContext {
  classifiers: ClassifierRepository;
  callbacks: CallbackRepository;
  queue: CallbackQueue;
  allowPrivateNetworks: boolean;
  timeoutMs: number;
  logger: Logger;
  now: () => string;
}

/** Moves recorded callbacks from the outbox to the delivery queue; returns how many. Redis down: they wait for the next call. */
export async function relayOutbox(ctx: CallbackDeliveryContext): Promise<number> {
  let moved = 0;
  for (;;) {
    const batch = await ctx.callbacks.pendingOutbox(100);
    for (const entry of batch) {
      await ctx.queue.enqueue(entry);
      await ctx.callbacks.removeFromOutbox(entry.deliveryId);
      moved++;
    }
    if (batch.length < 100) return moved;
  }
}

/**
 * One try of one delivery. A classifier deleted (or changed hands) since the run ended gets
 * nothing. The body is sent as recorded, signed with the owner's current secret.
 * @throws CallbackDeliveryError when not delivered (the queue retries unless it is permanent).
 */
export async function deliverCallback(
  ctx: CallbackDeliveryContext,
  job: CallbackJobData,
): Promise<'delivered' | 'classifier-gone'> {
  const classifier = await ctx.classifiers.find(job.classifierId);
  if (!classifier || classifier.ownerId !== job.ownerId) return 'classifier-gone';
  const { secret } = await ctx.callbacks.secretOf(job.ownerId, ctx.now());
  await postCallback(
    job.url,
    job.body,
    { [SIGNATURE_HEADER]: signCallbackBody(secret, job.body), [DELIVERY_HEADER]: job.deliveryId },
    { timeoutMs: ctx.timeoutMs, allowPrivateNetworks: ctx.allowPrivateNetworks },
  );
  return 'delivered';
}

/**
 * Extension, GET /v3/callback_secret: the caller's callback signing secret (made on first use).
 * Receivers verify X-Callback-Signature-256 with it; see README "Training-end callbacks".
 */
export async function callbackSecret(
  ctx: { callbacks: CallbackRepository; now: () => string },
  input: { ownerId: string },
) {
  const { secret, created } = await ctx.callbacks.secretOf(input.ownerId, ctx.now());
  return { callback_secret: secret, created };
}

/** Extension, POST /v3/callback_secret: replaces the caller's secret; every delivery from now on (retries too) uses the new one. */
export async function rotateCallbackSecret(
  ctx: { callbacks: CallbackRepository; now: () => string },
  input: { ownerId: string },
) {
  const { secret, created } = await ctx.callbacks.rotateSecret(input.ownerId, ctx.now());
  return { callback_secret: secret, created };
}
