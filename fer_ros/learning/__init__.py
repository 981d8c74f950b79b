"""The learning wing: models, training and its data sources, evaluation, export, checkpoints and the face-api.js
teacher. The only wing that imports torch at module level."""
