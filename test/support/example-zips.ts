import AdmZip from 'adm-zip';
import { classImages, type ClassImageKind } from '../../fixtures/images';

/** A zip of `count` generated JPEGs of one visual class, as a user would upload it. */
export async function classZip(kind: ClassImageKind, count: number, seed: number): Promise<Buffer> {
  const zip = new AdmZip();
  (await classImages(kind, count, seed)).forEach((bytes, i) => zip.addFile(`${kind}/${i}.jpg`, bytes));
  return zip.toBuffer();
}

/** A multipart form of named zips (field → zip bytes) plus plain fields. */
export function trainingForm(zips: Record<string, Buffer>, fields: Record<string, string> = {}): FormData {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  for (const [field, bytes] of Object.entries(zips))
    form.append(field, new Blob([new Uint8Array(bytes)]), `${field}.zip`);
  return form;
}
