import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

/**
 * Encrypts small secrets at rest (TOTP secrets) with AES-256-GCM under a key
 * derived from the server secret by HKDF, so a copy of the database alone does
 * not reveal them. Format: v1.<iv>.<tag>.<ciphertext>, base64url parts.
 *
 * Rotation: seals with the current server secret's key; opens with it or with a
 * rotated-out one's (`previousSecrets`; GCM's tag tells which key sealed a
 * value). `reseal` re-encrypts a value sealed under an old key, so the daemon
 * can move everything to the current key before the old secret is dropped.
 */
export class SecretBox {
  private readonly key: Buffer;
  private readonly previous: Buffer[];

  constructor(serverSecret: Buffer, purpose: string, previousSecrets: Buffer[] = []) {
    const derive = (secret: Buffer) =>
      Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), `keen-gateway:${purpose}`, 32));
    this.key = derive(serverSecret);
    this.previous = previousSecrets.map(derive);
  }

  /** True when rotated-out secrets are configured, so values may need `reseal`. */
  get rotating(): boolean {
    return this.previous.length > 0;
  }

  seal(plain: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const ct = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    return ['v1', iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), ct.toString('base64url')].join(
      '.',
    );
  }

  open(sealed: string): string {
    return this.openWithAny(sealed).plain;
  }

  /** Which configured secret opens `sealed`: the current one, a previous one, or none (also for a malformed value). */
  opens(sealed: string): 'current' | 'previous' | null {
    try {
      return this.openWithAny(sealed).current ? 'current' : 'previous';
    } catch {
      return null;
    }
  }

  /** The value sealed again under the current key when an old key had sealed it; null when it already is current. */
  reseal(sealed: string): string | null {
    const { plain, current } = this.openWithAny(sealed);
    return current ? null : this.seal(plain);
  }

  private openWithAny(sealed: string): { plain: string; current: boolean } {
    const [v, iv, tag, ct] = sealed.split('.');
    if (v !== 'v1' || !iv || !tag || ct === undefined) throw new Error('sealed value has an unknown format');
    const [ivBytes, tagBytes, ctBytes] = [iv, tag, ct].map((part) => Buffer.from(part, 'base64url')) as [
      Buffer,
      Buffer,
      Buffer,
    ];
    const keys = [this.key, ...this.previous];
    for (let i = 0; i < keys.length; i++) {
      try {
        const decipher = createDecipheriv('aes-256-gcm', keys[i]!, ivBytes);
        decipher.setAuthTag(tagBytes);
        const plain = Buffer.concat([decipher.update(ctBytes), decipher.final()]).toString('utf8');
        return { plain, current: i === 0 };
      } catch {
        // Not this key (the authentication tag did not match): try the next one.
      }
    }
    throw new Error('sealed value does not open with the current or a previous server secret');
  }
}
