"""Everything that touches bpy: import, clips, normalisation, cameras, lights, passes, procedural assets.

Nothing outside this package imports bpy, and importing `render` itself does not: the bpy modules
are imported by whoever needs them (render.worker, render.procedural).
"""
