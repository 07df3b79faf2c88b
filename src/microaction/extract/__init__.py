"""Video → body parse → region clips → encoders → feature store.

``pipeline``: one video through the chain (``Extractor``, ``ExtractParams``); ``jobs``: extraction
jobs planned (clip, long recording, several people) and run into a store (``jobs.runner``), and
one video outside a store (``jobs.execute.extract_video``). Nothing is imported here, so that
importing a submodule stays light.
"""
