"""Take the README's screenshot of the napari plugin: docs/napari-sepconv.png.

The astronaut sample, the Edge filter's result beside the input (napari's grid
view), and the Kernel filter showing what separating a kernel saves. Needs a
display; on a headless machine:

    xvfb-run -a python docs/screenshot.py [OUTPUT.png]
"""

import sys
import time
from pathlib import Path

import napari
from napari.qt import get_qapp


def wait_until(condition, timeout=120.0):
    app = get_qapp()
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("napari did not finish in time")
        app.processEvents()
        time.sleep(0.02)


def settle(seconds=0.5):
    app = get_qapp()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def main(output: Path) -> None:
    viewer = napari.Viewer(title="napari-sepconv")
    viewer.window.resize(1500, 860)
    viewer.open_sample("napari-sepconv", "astronaut")
    _, widget = viewer.window.add_plugin_dock_widget("napari-sepconv", "Edge filter")
    wait_until(lambda: not widget.busy)  # the background warm-up
    widget.run()
    wait_until(lambda: not widget.busy and "astronaut [sobel]" in viewer.layers)
    _, kernel_widget = viewer.window.add_plugin_dock_widget("napari-sepconv", "Kernel filter")
    wait_until(lambda: not kernel_widget.busy)
    viewer.canvas.grid.enabled = True
    viewer.reset_view()
    settle()
    viewer.screenshot(str(output), canvas_only=False, flash=False)
    viewer.close()
    print(f"wrote {output}")


if __name__ == "__main__":
    default = Path(__file__).with_name("napari-sepconv.png")
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
