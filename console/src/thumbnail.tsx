import { useEffect, useRef, useState } from 'preact/hooks';
import type { Api, Thumbnail } from './api';

/**
 * Thumbnails this tab has downloaded, by `classifier/example`: shown at once when a grid is drawn again,
 * then revalidated with their ETag (a 304 costs no image bytes). Bounded: the oldest object URL is
 * revoked past MAX_KEPT, about 4 MB of 160 px JPEGs.
 */
const MAX_KEPT = 600;
const kept = new Map<string, Thumbnail>();

function keep(key: string, thumbnail: Thumbnail) {
  const old = kept.get(key);
  if (old && old.url !== thumbnail.url) URL.revokeObjectURL(old.url);
  kept.delete(key);
  kept.set(key, thumbnail);
  while (kept.size > MAX_KEPT) {
    const [oldestKey, oldest] = kept.entries().next().value as [string, Thumbnail];
    URL.revokeObjectURL(oldest.url);
    kept.delete(oldestKey);
  }
}

/** Starts loading a little before a tile scrolls into view, so a scrolled grid looks already filled. */
const AHEAD = '300px';

/**
 * An example's thumbnail, fetched with the API key (an <img src> cannot send it) only once the tile is
 * near the viewport. `alt` names the example for screen readers.
 */
export function ExampleThumbnail(props: { api: Api; classifierId: string; exampleId: string; alt: string }) {
  const key = `${props.classifierId}/${props.exampleId}`;
  const [thumbnail, setThumbnail] = useState<Thumbnail | undefined>(() => kept.get(key));
  const [failed, setFailed] = useState<string | null>(null);
  const box = useRef<HTMLSpanElement>(null);

  useEffect(() => {
    let live = true;
    const load = () => {
      props.api.thumbnail(props.classifierId, props.exampleId, kept.get(key)).then(
        (t) => {
          keep(key, t);
          if (live) setThumbnail(t);
        },
        (error: Error) => live && setFailed(error.message),
      );
    };
    const observer = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting)) {
          observer.disconnect();
          load();
        }
      },
      { rootMargin: AHEAD },
    );
    if (box.current) observer.observe(box.current);
    return () => {
      live = false;
      observer.disconnect();
    };
  }, [props.api, key]);

  return (
    <span class="thumb" ref={box} data-testid="thumbnail">
      {thumbnail ? (
        <img src={thumbnail.url} alt={props.alt} loading="lazy" />
      ) : failed ? (
        <span class="thumb-failed small" title={failed}>
          no preview
        </span>
      ) : (
        <span class="thumb-loading" aria-hidden="true" />
      )}
    </span>
  );
}
