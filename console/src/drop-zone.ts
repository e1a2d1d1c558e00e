import { useState } from 'preact/hooks';

/** Drag-and-drop handlers for an element, and whether something is being dragged over it. */
export function useDropZone(onDrop: (transfer: DataTransfer) => void) {
  const [over, setOver] = useState(false);
  return {
    over,
    handlers: {
      onDragOver: (event: DragEvent) => {
        event.preventDefault(); // without it the browser opens the dropped file instead
        setOver(true);
      },
      onDragLeave: () => setOver(false),
      onDrop: (event: DragEvent) => {
        event.preventDefault();
        setOver(false);
        if (event.dataTransfer) onDrop(event.dataTransfer);
      },
    },
  };
}
