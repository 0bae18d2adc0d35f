/** Moves focus into a dialog as it opens (autofocus does not apply to content added later). */
export function focusSoon(el: HTMLElement): void {
  queueMicrotask(() => el.focus());
}
