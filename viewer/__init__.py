"""`pipeline view`: an interactive browser viewer (viser) for datasets and reconstructed Gaussians.

Layers, lightest first: `gaussians` (.ply by property name -> centres, covariances, colours, opacities),
`geometry` (frustum poses, depth back-projection; numpy only), `dataset` (the shard listing and rows), `reader` (one
sample's members by ranged reads), `samples` (filters, metrics, sorting), `scene` (what one sample or one reconstruction puts in a viser scene),
`app` (the GUI and its callbacks), `recon` (reconstruction folders, on-the-spot reconstruction),
`export` (a reconstruction as a self-contained HTML scene). Only `scene`, `app` and `export` import viser.
"""
