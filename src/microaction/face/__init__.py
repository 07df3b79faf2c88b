"""L-SSAT face analysis: texture descriptors (LBP, LDP), a ViT with a texture-MAE auxiliary task,
group-fairness metrics, face crops (MediaPipe) and a generated face-like dataset.

Modules (import what you need; nothing heavy is imported here):

* ``texture``   ``lbp``, ``ldp``, ``texture_targets`` and their numpy references;
* ``model``     ``FaceViT``, ``TextureMAELoss`` (reusable by other encoders), ``LSSAT``, ``build_lssat``;
* ``fairness``  ``group_report`` (per-group / worst-group accuracy, gap, std, equalised odds);
* ``data``      ``read_face_csv`` (``path,label[,group]``) and ``load_face_split``;
* ``synthetic`` ``generate_face_dataset`` (classes differ only in fine texture; nuisance group);
* ``crops``     ``crop_faces_from_file`` / ``FaceCropper`` (aligned crops from video, GIF, image);
* ``train``     ``train_face``, ``evaluate_run`` (``mar face train`` / ``mar face eval``).

See docs/face.md.
"""
