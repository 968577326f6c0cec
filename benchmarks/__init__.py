"""numconv's benchmarks: the asv suite (``bench_*.py``) and ``compare.py``, over the anchor suite in ``anchors.py``."""
