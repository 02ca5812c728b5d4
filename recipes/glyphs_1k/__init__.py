"""Recipe for the built-in source world `builtin:glyphs-1k`.

`fonts` lists the twelve DejaVu faces, `render` draws glyphs from them with augmentation,
`classes` picks the 1000 source classes and `train_classifier` trains the source classifier.
"""
