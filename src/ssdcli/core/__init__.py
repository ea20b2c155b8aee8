"""Pure tensor code of SSD: box ops, default boxes, matching, loss and decoding. No state, no I/O."""
