"""L-SSAT face analysis: texture descriptors (LBP, LDP), a ViT with a texture-MAE auxiliary task,
group-fairness metrics, face crops (MediaPipe) and a generated face-like dataset.

The texture descriptors (``lbp``, ``ldp``, ``texture_targets``) live in ``microaction.models.texture``
and the model (``FaceViT``, ``TextureMAELoss``, ``LSSAT``, ``build_lssat``) in
``microaction.models.face_vit``: B-MoE's head-texture branch uses them too, and ``models/`` never
imports ``face/``. Modules here (import what you need; nothing heavy is imported here):

* ``fairness``  ``group_report`` (per-group / worst-group accuracy, gap, std, equalised odds);
* ``data``      ``read_face_csv`` (``path,label[,group]``) and ``load_face_split``;
* ``synthetic`` ``generate_face_dataset`` (classes differ only in fine texture; nuisance group);
* ``crops``     ``crop_faces_from_file`` / ``FaceCropper`` (aligned crops from video, GIF, image);
* ``train``     ``train_face``, ``evaluate_face_run`` (``mar face train`` / ``mar face eval``).

See docs/face.md.
"""
