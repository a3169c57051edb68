"""The models themselves: CLIP, the prefix mapper, captioners, language and answer models, the tagger, scoring.

Nothing here imports `vision.fast`: speed paths wrap these models from outside (`vision.pipeline`).
"""
