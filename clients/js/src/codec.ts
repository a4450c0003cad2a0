/**
 * Frame encoding of docs/protocol.md: `batch` and `compressed` (base64 of zlib bytes).
 * Compression uses the platform's CompressionStream / DecompressionStream ("deflate" is the
 * zlib format); where they are missing the client neither asks for compressed frames nor
 * compresses what it sends.
 */

export const canInflate = (): boolean => typeof (globalThis as any).DecompressionStream === "function";
export const canDeflate = (): boolean => typeof (globalThis as any).CompressionStream === "function";

export function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000) as unknown as number[]);
  }
  return btoa(s);
}

export function fromBase64(text: string): Uint8Array {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

async function pipe(bytes: Uint8Array, stream: any): Promise<Uint8Array> {
  const body = new Blob([bytes as BlobPart]).stream().pipeThrough(stream);
  return new Uint8Array(await new Response(body).arrayBuffer());
}

/** zlib bytes (base64) → text. */
export async function inflate(b64: string): Promise<string> {
  const out = await pipe(fromBase64(b64), new (globalThis as any).DecompressionStream("deflate"));
  return new TextDecoder().decode(out);
}

/** text → zlib bytes (base64). */
export async function deflate(text: string): Promise<string> {
  return toBase64(await pipe(new TextEncoder().encode(text), new (globalThis as any).CompressionStream("deflate")));
}

/** The messages of one server frame, `batch` and `compressed` unpacked (recursively). */
export async function unpack(frame: any): Promise<any[]> {
  if (frame && frame.type === "batch" && Array.isArray(frame.messages)) {
    const out: any[] = [];
    for (const m of frame.messages) out.push(...(await unpack(m)));
    return out;
  }
  if (frame && frame.type === "compressed" && typeof frame.data === "string") {
    return unpack(JSON.parse(await inflate(frame.data)));
  }
  return [frame];
}

/** Bytes of a string as UTF-8 (what the gateway's size limit counts). */
export function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c < 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** A UUID v4 (crypto.getRandomValues works outside secure contexts too). */
export function uuid(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
