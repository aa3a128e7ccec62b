"""Data layer: datasets on disk (or generated) -> decoded, cached, split uint8 images -> batches.

``bundle.load_data(cfg)`` builds a DataBundle from ``cfg.dataset``; ``datamodule`` serves it to
Lightning; ``images.decode_image`` is the same preprocessing for images met at prediction time;
``transforms.build_augmentation`` turns ``cfg.augmentation`` into a transform. Import from the
modules: the package itself imports nothing, so tools that only describe data never load
Lightning.
"""
