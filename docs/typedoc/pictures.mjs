// @ts-check
/**
 * A TypeDoc plugin: every picture on a page of the site opens on its own, at full size, when clicked. The guides
 * show a picture as wide as their column; a click opens the picture's file from `media/`, where the browser shows
 * it at its own width (the timelines are laid out for the column and drawn larger there). The markdown stays
 * plain `![alt](file.svg)` (GitHub makes those clickable itself).
 */
import { PageEvent } from 'typedoc';

/** An `<img>` of a file TypeDoc copied to `media/`, not already inside a link. */
const PICTURE = /(<a\b[^>]*>\s*)?(<img\s[^>]*\bsrc="((?:\.\.\/)*media\/[^"]+)"[^>]*>)/g;

/**
 * Wrap every picture of `html` in a link to its file.
 *
 * @param {string} html
 * @returns {string}
 */
export function linkPictures(html) {
  return html.replace(PICTURE, (whole, link, img, src) =>
    link ? whole : `<a href="${src}" class="vac-picture" title="Open the picture at full size">${img}</a>`,
  );
}

/** @param {import('typedoc').Application} app */
export function load(app) {
  app.renderer.on(PageEvent.END, (page) => {
    if (page.contents !== undefined) page.contents = linkPictures(page.contents);
  });
}
