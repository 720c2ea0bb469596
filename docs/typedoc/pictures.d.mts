/** Types of pictures.mjs (for the tests). */
export function linkPictures(html: string): string;
export function load(app: unknown): void;
