"""Training recipes of xray-audit: the reference chest X-ray classifier, the defense models, ONNX export.

Modules (imported on demand; importing the package itself loads nothing heavy):

* :mod:`training.phantoms`   -- SYNTHETIC procedural chest radiograph phantoms;
* :mod:`training.common`     -- device, data loading, patient-wise split, run folders;
* :mod:`training.recipes`    -- reference / augment / adversarial classifier recipes (configuration in
  :mod:`training.recipe_config`, loop in :mod:`training.recipe_loop`, outputs in :mod:`training.recipe_publish`);
* :mod:`training.denoiser`   -- HGD denoiser; :mod:`training.cyclegan` -- CycleGAN restoration
  (networks in :mod:`training.cyclegan_nets`);
* :mod:`training.export`     -- ONNX export with the model contract, checked against torch;
* :mod:`training.demo`       -- the data and models of ``xray-audit demo``.
"""
