"""`pipeline view`: an interactive browser viewer (viser) for datasets and reconstructed Gaussians.

Layers, lightest first: `gaussians` (.ply by property name -> centres, covariances, colours, opacities),
`geometry` (frustum poses, depth back-projection; numpy only), `reader` (one sample's members by ranged
reads), `dataset` (the shard listing and rows), `samples` (filters, metrics, worst-first sorting), `scene`
(what one sample or one reconstruction puts in a viser scene), `recon` (reconstruction folders, on-the-spot
reconstruction), `controls` and `app` (the GUI and its callbacks), `server` (start), `export` (a
reconstruction as a self-contained HTML scene), `report` (the demo report's section). Only `server` and
`export` import viser; the others drive the scene and GUI handles they are given.
"""
