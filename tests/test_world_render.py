"""The toy world's renderer, captions and vocabulary (no models)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from delora_diffusion.data.prompts import OBJECT_PROMPTS, fill
from delora_diffusion.world.dataset import pretraining_scene, render_scenes
from delora_diffusion.world.objects import CLASS_NOUNS, PATTERNS, PROPERTIES, sample_instance
from delora_diffusion.world.render import Pose, Scene, caption, parse_prompt, render
from delora_diffusion.world.scenes import CONTEXTS
from delora_diffusion.world.subjects import DEMO_SUBJECT, HELD_OUT_COMBINATIONS, SUBJECTS
from delora_diffusion.world.views import sibling
from delora_diffusion.world.vocabulary import IDENTIFIERS, build_tokenizer, caption_words


def test_a_scene_renders_the_same_pixels_every_time_and_differs_with_its_seed():
    instance = sample_instance("teapot", random.Random(3))
    scene = Scene(instance, "snow", None, Pose(0.45, 0.6, True, 4.0), seed=11)
    first, mask = render(scene)
    again, mask_again = render(scene)
    assert first.size == (64, 64) and mask.mode == "L"
    assert np.array_equal(np.asarray(first), np.asarray(again)) and np.array_equal(
        np.asarray(mask), np.asarray(mask_again)
    )
    other, _ = render(Scene(instance, "snow", None, scene.pose, seed=12))
    assert not np.array_equal(np.asarray(first), np.asarray(other))


def test_every_dreambooth_object_prompt_is_a_world_scene_for_every_class():
    for class_noun in CLASS_NOUNS:
        seen = set()
        for template in OBJECT_PROMPTS:
            context, prop = parse_prompt(fill(template, "sks", class_noun), class_noun, "sks")
            assert caption(class_noun, context, prop) == fill(template, None, class_noun)
            seen.add((context, prop))
        assert len(seen) == 25  # 20 contexts and 5 properties, none merged
    assert parse_prompt("a photo of sks toy", "toy", "sks") == ("studio", None)
    with pytest.raises(ValueError, match="not a toy-world prompt"):
        parse_prompt("a toy wearing a santa hat", "toy")


def test_contexts_and_properties_change_the_picture_and_the_mask_follows_the_object():
    instance = DEMO_SUBJECT  # orange: "red" and "purple" recolour it
    pose = Pose(0.5, 0.6, False, 0.0)
    studio, studio_mask = render(Scene(instance, "studio", None, pose))
    area = np.asarray(studio_mask).astype(bool).mean()
    assert 0.05 < area < 0.5
    pixels = {}
    for context in CONTEXTS:
        image, mask = render(Scene(instance, context.name, None, pose))
        pixels[context.name] = np.asarray(image).astype(float)
        visible = np.asarray(mask).astype(bool).mean()
        assert visible <= area + 0.01
        if context.cover:  # floating: part of the object is under the surface
            assert visible < 0.9 * area
    names = list(pixels)
    distances = [np.abs(pixels[a] - pixels[b]).mean() for i, a in enumerate(names) for b in names[i + 1 :]]
    assert min(distances) > 10  # every pair of the 20 contexts differs clearly (mean |Δ| in 0..255)
    for prop in PROPERTIES:
        image, mask = render(Scene(instance, "studio", prop, pose))
        inside = np.asarray(studio_mask).astype(bool)
        changed = np.abs(np.asarray(image).astype(float) - np.asarray(studio).astype(float))[inside].mean()
        assert changed > 8, prop  # mean |Δ| over the object's pixels, 0..255
    cube, cube_mask = render(Scene(instance, "studio", "cube shaped", pose))
    assert (np.asarray(cube_mask) != np.asarray(studio_mask)).mean() > 0.01


def test_pretraining_never_draws_a_held_out_subject_and_labels_match_the_scenes():
    scenes = [pretraining_scene(0, k) for k in range(3000)]
    combos = {(s.instance.class_noun, s.instance.main, s.instance.accent) for s in scenes}
    assert not combos & HELD_OUT_COMBINATIONS
    assert (DEMO_SUBJECT.class_noun, DEMO_SUBJECT.main, DEMO_SUBJECT.accent) in HELD_OUT_COMBINATIONS
    assert {s.instance.class_noun for s in scenes} == set(CLASS_NOUNS)
    assert pretraining_scene(0, 17) == pretraining_scene(0, 17) and pretraining_scene(0, 17) != pretraining_scene(1, 17)
    data = render_scenes(scenes[:6])
    assert data.images.shape == (6, 64, 64, 3) and data.masks.shape == (6, 64, 64)
    assert data.captions == [s.caption() for s in scenes[:6]]


def test_every_caption_word_and_identifier_is_one_token_and_other_text_still_tokenizes(tmp_path):
    tokenizer = build_tokenizer(tmp_path, max_length=24)
    for word in caption_words() + list(IDENTIFIERS):
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word
    ids = tokenizer("a sks stuffed animal on top of green grass with sunflowers around it").input_ids
    assert len(ids) == 15 and tokenizer.convert_ids_to_tokens(ids[2]) == "sks</w>"
    assert len(tokenizer("a dog wearing a hat", add_special_tokens=False).input_ids) > 5  # characters, no failure
    longest = max((pretraining_scene(0, k).detailed_caption() for k in range(2000)), key=len)
    assert len(tokenizer(longest).input_ids) <= 21, longest  # the alt-text captions fit, "sks" included


def test_patterns_are_drawn_large_enough_to_survive_and_every_pattern_differs():
    from dataclasses import replace

    pose = Pose(0.5, 0.6, False, 0.0)
    base = replace(SUBJECTS["teapot"], main="white", accent="red")
    pictures = {
        p: np.asarray(render(Scene(replace(base, pattern=p), "studio", None, pose))[0]).astype(float) for p in PATTERNS
    }
    mask = np.asarray(render(Scene(base, "studio", None, pose))[1]).astype(bool)
    for pattern in PATTERNS[1:]:
        assert np.abs(pictures[pattern] - pictures["plain"])[mask].mean() > 15, pattern
    # down the body's middle column, white and red bands alternate (green channel high, then low), each band
    # at least 2 px tall at 64 px
    rows = np.flatnonzero(mask.any(axis=1))
    column = pictures["stripes"][rows, int(np.median(np.flatnonzero(mask.any(axis=0)))), 1] < 128
    bands = np.diff(np.flatnonzero(np.diff(column.astype(int))))
    assert len(bands) >= 3 and np.median(bands) >= 2, bands


def test_alt_text_captions_describe_the_instance_and_templates_stay_for_properties():
    instance = SUBJECTS["teapot"]
    assert instance.description() == "a striped white teapot with red parts"
    assert DEMO_SUBJECT.description() == "an orange toy with teal parts"
    assert Scene(instance, "snow").detailed_caption() == "a striped white teapot with red parts in the snow"
    assert Scene(instance, "studio").detailed_caption() == "a photo of a striped white teapot with red parts"
    assert Scene(instance, "snow").detailed_caption(with_context=False) == "a striped white teapot with red parts"
    assert Scene(instance, "studio", "wet").detailed_caption() == "a wet teapot"


def test_world_subjects_are_one_per_class_with_patterns_and_siblings_share_only_colours():
    assert sorted(s.class_noun for s in SUBJECTS.values()) == sorted(CLASS_NOUNS)
    assert {s.pattern for s in SUBJECTS.values()} == set(PATTERNS)
    rng = random.Random(0)
    for subject in SUBJECTS.values():
        for _ in range(5):
            other = sibling(subject, rng)
            assert (other.class_noun, other.main, other.accent) == (subject.class_noun, subject.main, subject.accent)
            assert (other.pattern, other.part) != (subject.pattern, subject.part)
