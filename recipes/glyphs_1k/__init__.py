"""Recipe for the built-in source world `builtin:glyphs-1k`.

`fonts` lists the twelve DejaVu faces, `render` draws glyphs from them with augmentation,
`classes` picks the 1000 source classes (written to `classes.json`, read back through
`class_list`), `train_classifier` trains the source classifier and `train_generator` the generator.
"""
