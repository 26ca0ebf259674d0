import { isIP } from 'node:net';
import { GatewayError } from '../errors.js';
import { isForbiddenAddress } from './address-policy.js';

/** Longest webhook URL accepted, in characters (as given). */
export const MAX_WEBHOOK_URL_LENGTH = 2048;

export interface WebhookUrlPolicy {
  /**
   * `webhooks.allow_private_targets` (config.example.yaml): the test and
   * development switch. When true, plain http and private, loopback and
   * link-local targets are accepted; production keeps it false.
   */
  allowPrivateTargets: boolean;
}

/** The host of a URL as a connectable name or IP literal (IPv6 without brackets). */
export function hostOf(url: URL): string {
  const h = url.hostname;
  return h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
}

/**
 * Checks a user-supplied webhook URL and returns it parsed. Refuses (400
 * INVALID_FIELD on `webhook_url`) anything but an absolute https URL with a
 * host, no credentials and at most 2048 characters; plain http only when
 * private targets are allowed. With private targets refused, an IP-literal host
 * in a refused range (see address-policy.ts) is refused here already; a name is
 * checked again at connect time against every address it resolves to.
 *
 * The WHATWG parser normalizes the host first, so `http://0x7f.1/`,
 * `http://2130706433/` and `http://[::ffff:127.0.0.1]/` are seen as the
 * loopback addresses they are.
 */
export function validateWebhookUrl(raw: string, { allowPrivateTargets }: WebhookUrlPolicy): URL {
  if (typeof raw !== 'string' || raw.length === 0) throw refuse('must be a URL');
  if (raw.length > MAX_WEBHOOK_URL_LENGTH) throw refuse(`must be at most ${MAX_WEBHOOK_URL_LENGTH} characters`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw refuse('must be an absolute URL');
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && allowPrivateTargets)) {
    throw refuse(allowPrivateTargets ? 'must be an http or https URL' : 'must be an https URL');
  }
  if (url.username !== '' || url.password !== '') throw refuse('must not contain credentials');
  const host = hostOf(url);
  if (host === '') throw refuse('must have a host');
  if (!allowPrivateTargets && isIP(host) !== 0 && isForbiddenAddress(host)) {
    throw refuse('must not point to a private, loopback, link-local or reserved address');
  }
  return url;
}

function refuse(message: string): GatewayError {
  return new GatewayError('INVALID_FIELD', `webhook_url ${message}`, {
    details: [{ field: 'webhook_url', message }],
  });
}
