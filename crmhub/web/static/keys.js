// Keyboard shortcuts: an element with data-key="y" is clicked when "y" is pressed, unless
// the focus is in a text field. The page lists its shortcuts next to the buttons.
document.addEventListener("keydown", (event) => {
  const target = event.target;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
  const element = document.querySelector(`[data-key="${CSS.escape(event.key)}"]`);
  if (element) {
    event.preventDefault();
    element.click();
  }
});
