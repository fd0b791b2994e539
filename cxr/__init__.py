"""The framework-free core every part of the stack imports.

`cxr.imaging` (bytes → grey image → tensor), `cxr.errors` (image errors, no HTTP codes) and
`cxr.card` (the model card: one typed schema). No web framework and no TensorFlow in here; nothing
in here imports `service`, `training` or `gateway_flask`.
"""
