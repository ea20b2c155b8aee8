"""All drawing of ssdcli: one colour scheme, boxes on images, curves, charts and the pictures of ``ssd encode``.

The modules take plain arrays, tensors and dataclasses and return BGR uint8 images [H, W, 3] (OpenCV order, as the
engine reads and writes them) or matplotlib figures; deciding what to draw and writing files is the engine's job.
Nothing here imports the engine or the CLI.
"""
