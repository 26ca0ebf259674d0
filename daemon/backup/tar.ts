import { createHash } from 'node:crypto';
import { closeSync, fstatSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';

/**
 * The few lines of POSIX tar (ustar) a backup needs, written and read here
 * rather than through a general tar library: regular files with short flat
 * names, nothing else. The archives open with any tar (`tar tvf`, `tar xf`),
 * and the reader accepts only regular files (and directory entries, skipped):
 * no links, devices, PAX or GNU extension headers, so an archive cannot make
 * it write outside the folder it extracts into. Sizes past ustar's 8 GiB use
 * the base-256 size field that GNU tar and bsdtar read.
 */

const BLOCK = 512;
const CHUNK = 1 << 20;
const MAX_OCTAL_SIZE = 8 ** 11 - 1;

export class TarError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TarError';
  }
}

/** A file to put in an archive: its name there and where it is read from. */
export interface TarInput {
  name: string;
  path: string;
}

function writeString(block: Buffer, offset: number, length: number, value: string): void {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length > length) throw new TarError(`tar: "${value}" does not fit in ${length} bytes`);
  bytes.copy(block, offset);
}

/** `length - 1` octal digits and a NUL, as ustar writes numbers. */
function writeOctal(block: Buffer, offset: number, length: number, value: number): void {
  writeString(block, offset, length, value.toString(8).padStart(length - 1, '0') + '\0');
}

function header(name: string, size: number, mtimeSeconds: number): Buffer {
  const block = Buffer.alloc(BLOCK);
  writeString(block, 0, 100, name);
  writeOctal(block, 100, 8, 0o600);
  writeOctal(block, 108, 8, 0);
  writeOctal(block, 116, 8, 0);
  if (size <= MAX_OCTAL_SIZE) writeOctal(block, 124, 12, size);
  else {
    // Base-256: the first byte's high bit set, the size big-endian in the rest of the field.
    block[124] = 0x80;
    block.writeBigUInt64BE(BigInt(size), 128);
  }
  writeOctal(block, 136, 12, mtimeSeconds);
  block[156] = 0x30; // '0': a regular file
  writeString(block, 257, 6, 'ustar\0');
  writeString(block, 263, 2, '00');
  // The checksum is computed with its own field read as eight spaces.
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of block) sum += b;
  writeString(block, 148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
  return block;
}

/**
 * Writes `inputs` as a tar archive to `file`, which must not exist yet (created
 * with `mode`), and flushes it to disk. Each member has mode 0600, owner 0.
 */
export function writeTar(file: string, inputs: TarInput[], options: { mode: number; mtime?: Date }): number {
  const mtime = Math.floor((options.mtime ?? new Date()).getTime() / 1000);
  const out = openSync(file, 'wx', options.mode);
  let written = 0;
  const write = (buf: Buffer, length = buf.length) => {
    let off = 0;
    while (off < length) off += writeSync(out, buf, off, length - off);
    written += length;
  };
  try {
    const chunk = Buffer.alloc(CHUNK);
    for (const input of inputs) {
      const fd = openSync(input.path, 'r');
      try {
        const size = fstatSync(fd).size;
        write(header(input.name, size, mtime));
        let left = size;
        while (left > 0) {
          const n = readSync(fd, chunk, 0, Math.min(CHUNK, left), null);
          if (n === 0) throw new TarError(`tar: ${input.path} shrank while it was being archived`);
          write(chunk, n);
          left -= n;
        }
        const pad = (BLOCK - (size % BLOCK)) % BLOCK;
        if (pad > 0) write(Buffer.alloc(pad));
      } finally {
        closeSync(fd);
      }
    }
    write(Buffer.alloc(BLOCK * 2));
    // fsync through the descriptor: the archive is on disk before anyone is told it exists.
    fsyncSync(out);
  } finally {
    closeSync(out);
  }
  return written;
}

function readString(block: Buffer, offset: number, length: number): string {
  const field = block.subarray(offset, offset + length);
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? length : end).toString('utf8');
}

function readNumber(block: Buffer, offset: number, length: number, what: string): number {
  if ((block[offset]! & 0x80) !== 0) {
    let n = 0n;
    for (let i = offset + 1; i < offset + length; i++) n = (n << 8n) | BigInt(block[i]!);
    if (block[offset] !== 0x80 || n > BigInt(Number.MAX_SAFE_INTEGER)) throw new TarError(`tar: ${what} out of range`);
    return Number(n);
  }
  const text = readString(block, offset, length).trim();
  if (!/^[0-7]*$/.test(text)) throw new TarError(`tar: ${what} is not an octal number`);
  return text === '' ? 0 : parseInt(text, 8);
}

/** A member as the reader hands it over: name, size and the sha256 of its content. */
export interface TarMember {
  name: string;
  size: number;
  sha256: string;
}

/**
 * Reads a tar archive written by `writeTar` (or by tar itself with plain
 * files): for each regular file, `target(name)` says where to write its
 * content (a new file, created with mode 0600) or throws to refuse the name.
 * Checks every header checksum; refuses every other kind of entry.
 */
export function readTar(file: string, target: (name: string) => string): TarMember[] {
  const members: TarMember[] = [];
  const fd = openSync(file, 'r');
  try {
    const total = fstatSync(fd).size;
    const block = Buffer.alloc(BLOCK);
    const chunk = Buffer.alloc(CHUNK);
    let pos = 0;
    const readExactly = (buf: Buffer, length: number) => {
      let off = 0;
      while (off < length) {
        const n = readSync(fd, buf, off, length - off, pos);
        if (n === 0) throw new TarError(`tar: ${file} ends in the middle of an entry (truncated?)`);
        off += n;
        pos += n;
      }
    };
    for (;;) {
      if (pos + BLOCK > total) throw new TarError(`tar: ${file} ends without the end-of-archive marker (truncated?)`);
      readExactly(block, BLOCK);
      if (block.every((b) => b === 0)) break;
      const stored = /^[0-7]+$/.test(readString(block, 148, 8).trim())
        ? parseInt(readString(block, 148, 8).trim(), 8)
        : -1;
      let sum = 0;
      for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
      if (sum !== stored)
        throw new TarError(
          `tar: a header checksum does not match at byte ${pos - BLOCK} (not a tar archive, or a damaged one)`,
        );
      if (!readString(block, 257, 6).startsWith('ustar')) throw new TarError('tar: not a ustar archive');
      const prefix = readString(block, 345, 155);
      const name = (prefix ? `${prefix}/` : '') + readString(block, 0, 100);
      const type = String.fromCharCode(block[156]!);
      const size = readNumber(block, 124, 12, 'size');
      const padded = Math.ceil(size / BLOCK) * BLOCK;
      if (type === '5') {
        if (size !== 0) throw new TarError(`tar: directory entry ${JSON.stringify(name)} has content`);
        continue;
      }
      if (type !== '0' && type !== '\0')
        throw new TarError(
          `tar: entry ${JSON.stringify(name)} is not a regular file (type ${JSON.stringify(type)}); refused`,
        );
      if (pos + padded > total)
        throw new TarError(`tar: ${file} ends in the middle of ${JSON.stringify(name)} (truncated?)`);
      const dest = target(name.replace(/^(\.\/)+/, ''));
      const out = openSync(dest, 'wx', 0o600);
      const hash = createHash('sha256');
      try {
        let left = size;
        while (left > 0) {
          const n = Math.min(CHUNK, left);
          readExactly(chunk, n);
          hash.update(chunk.subarray(0, n));
          let off = 0;
          while (off < n) off += writeSync(out, chunk, off, n - off);
          left -= n;
        }
        fsyncSync(out);
      } finally {
        closeSync(out);
      }
      pos += padded - size;
      members.push({ name: name.replace(/^(\.\/)+/, ''), size, sha256: hash.digest('hex') });
    }
  } finally {
    closeSync(fd);
  }
  return members;
}
