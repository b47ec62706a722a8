"""The toy world: a procedural miniature of the DreamBooth setting, and models pretrained on it.

- ``objects`` — four classes of things (toy robot, backpack, teapot, stuffed animal) with procedural
  instances, and the five property changes of the DreamBooth prompts;
- ``scenes`` — one procedural place per DreamBooth context prompt ("in the snow", "on the beach", ...);
- ``render`` — a scene (instance, context or property, pose) to a 64 × 64 image, its object mask and its
  DreamBooth-template caption; ``views`` — subject folders and multi-view sets; ``subjects`` — instances
  pretraining never drew;
- ``pretrain`` (``delora-world-pretrain``) — the VAE, UNet and text encoder of a real diffusers
  ``StableDiffusionPipeline`` and two judges (a DINO-style ``ViTModel`` and a ``CLIPModel``), trained from
  scratch; ``pretrained/`` holds the shipped weights with their cards (``assets.pretrained_path``);
- ``quality`` — what the judges say about images (zero-shot class and context, subject retrieval).
"""
