"""The core tier: what every stage stands on.

File formats (``io``), maths (``rotations``, ``fourier``, ``ctf``, ``fsc``, ``masks``), the
convection + projection operator (``ops``), tetrahedral meshes (``mesh``), the 3DFlex model
(``model``), the checkpoint format and the trained-model loader (``checkpoint``,
``trained``), the map deformer (``deform``), FSC tables and sharpening (``fsc_outputs``), the
Wiener accumulator (``wiener``), typed records (``prep_info``, ``train_config``) and small
helpers (``utils``). Nothing here imports a stage or the command line.
"""
