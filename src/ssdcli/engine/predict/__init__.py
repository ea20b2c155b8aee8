"""``ssd predict``: ``run.predict`` (images, folders, videos, cameras and streams through a
:class:`~ssdcli.engine.inference.detectors.Detector`) and ``outputs`` (what a run folder holds besides pictures)."""
