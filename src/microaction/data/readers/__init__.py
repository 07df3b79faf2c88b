"""Readers of label and pose files, one module per kind of format, apart from the feature store,
the loader and the samplers (which read what these give):

- ``annotations``: clip labels (generic CSV manifest, MA-52 lists, iMiGUE, skeleton CSVs, split
  plans) and ``read_annotations``, which picks a reader for a file;
- ``mpiigi``: MPII-GI sample CSVs (multi-label group interactions);
- ``person_boxes``: a manifest's person-box columns;
- ``poses``, ``pickles``: pose pickles (MMAction2 / PySKL, MMN, ST-GCN) and the restricted
  unpickler they are read through;
- ``segments``, ``segment_readers``: temporal annotations of long videos (``Segment``,
  ``Detection``; MMA-52 JSON / CSV, iMiGUE instances, SMG, generic CSV) and detection files;
- ``samples``: ``Sample`` and the text helpers the readers share.
"""
