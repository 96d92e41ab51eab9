import pytest

from mosaic.backend import Backend
from mosaic.schema import count_calls
from mosaic.tiles import (
    auto_density, cell_label, check_grid_fits, choose_grid, coarsened_note, grid_for_density, model_billions, neighbor_pairs,
    parse_grid, seam_box, tile_boxes,
)


@pytest.mark.parametrize("size,density,expected", [
    ((3000, 3000), "quick", (2, 2)),
    ((3000, 3000), "light", (3, 3)),
    ((3000, 3000), "dense", (4, 4)),
    ((3000, 3000), "max", (5, 5)),
    ((4000, 2000), "light", (4, 2)),  # the blog's drone shot
    ((4000, 3000), "light", (3, 3)),
    ((4000, 3000), "quick", (2, 2)),
    ((2000, 4000), "light", (2, 4)),  # portrait: more rows than columns
    ((3000, 4000), "dense", (3, 5)),
    ((8000, 2000), "light", (4, 2)),
    ((8000, 2000), "dense", (8, 2)),
])
def test_grid_follows_density_and_aspect(size, density, expected):
    assert grid_for_density(*size, density) == expected


def test_tiles_cover_the_image_exactly_without_overlap():
    boxes = tile_boxes(1001, 703, 3, 2)
    assert boxes[(0, 0)] == (0, 0, 334, 352)
    assert boxes[(2, 1)] == (667, 352, 1001, 703)
    area = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes.values())
    assert area == 1001 * 703
    assert list(boxes) == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]


def test_neighbor_pairs_each_shared_edge_once():
    pairs = neighbor_pairs(4, 2)
    assert len(pairs) == 2 * 3 + 4 * 1 == 10
    assert len({frozenset(p) for p in pairs}) == 10
    assert ((0, 0), (1, 0)) in pairs and ((0, 0), (0, 1)) in pairs and ((1, 0), (0, 0)) not in pairs
    assert neighbor_pairs(1, 1) == []


@pytest.mark.parametrize("cell,count", [((0, 0), 2), ((1, 0), 3), ((1, 1), 4), ((2, 2), 2)])
def test_corner_edge_and_centre_neighbours(cell, count):
    assert sum(cell in pair for pair in neighbor_pairs(3, 3)) == count


def test_seam_window_is_tile_sized_and_centred_on_the_shared_edge():
    boxes = tile_boxes(1200, 800, 3, 2)  # tiles 400x400
    assert seam_box(boxes[(0, 0)], boxes[(1, 0)]) == (200, 0, 600, 400)
    assert seam_box(boxes[(1, 0)], boxes[(1, 1)]) == (400, 200, 800, 600)
    with pytest.raises(ValueError):
        seam_box(boxes[(0, 0)], boxes[(2, 1)])


def test_seam_window_on_a_vertical_line_reaches_a_sixth_of_a_tile_past_each_corner():
    boxes = tile_boxes(1200, 1200, 3, 3)  # tiles 400x400: the corner (400, 400) is shared by four tiles
    assert seam_box(boxes[(0, 0)], boxes[(1, 0)], 1200) == (200, 0, 600, 467)  # clipped at the top edge
    assert seam_box(boxes[(0, 1)], boxes[(1, 1)], 1200) == (200, 333, 600, 867)
    assert seam_box(boxes[(1, 2)], boxes[(2, 2)], 1200) == (600, 733, 1000, 1200)  # clipped at the bottom edge
    assert seam_box(boxes[(0, 0)], boxes[(0, 1)], 1200) == (0, 200, 400, 600)  # a horizontal line: unchanged
    # a short sign on the corner is cut by both lines in every tile and in the horizontal-line window, whole here
    sign = (370, 390, 440, 415)
    inside = lambda box: box[0] <= sign[0] and box[1] <= sign[1] and sign[2] <= box[2] and sign[3] <= box[3]
    assert inside(seam_box(boxes[(0, 0)], boxes[(1, 0)], 1200)) and inside(seam_box(boxes[(0, 1)], boxes[(1, 1)], 1200))
    assert not any(inside(b) for b in [*boxes.values(), seam_box(boxes[(0, 0)], boxes[(0, 1)], 1200),
                                       seam_box(boxes[(1, 0)], boxes[(1, 1)], 1200)])
    wide = tile_boxes(1200, 600, 3, 3)  # landscape tiles 400x200: the window stays within a tile's width
    box = seam_box(wide[(0, 1)], wide[(1, 1)], 600)
    assert box == (200, 167, 600, 433) and box[3] - box[1] <= 400


@pytest.mark.parametrize("cols,rows,phases,expected", [
    # one phase: no tile syntheses (tile reports are merged in code); the blog asked each pair from both
    # sides and synthesised every tile: 38 calls for 4x2
    (4, 2, ["inspect"], 1 + 8 + 10 + 1),
    (4, 2, ["text", "subjects", "characteristics"], 1 + 24 + 20 + 8 + 1),  # seams: no lighting
    (3, 3, ["text"], 1 + 9 + 12 + 1),
    (4, 1, ["text"], 1 + 4 + 3 + 1),
    (1, 1, ["characteristics"], 1 + 1 + 0 + 1),  # lighting is not asked of seams
    (2, 2, ["subjects", "characteristics"], 1 + 8 + 4 + 4 + 1),
])
def test_call_count_formula(cols, rows, phases, expected):
    assert count_calls(cols, rows, phases) == expected


def test_labels_and_grid_parsing():
    assert cell_label((0, 0)) == "r1c1" and cell_label((3, 1)) == "r2c4"
    assert parse_grid("4x2") == (4, 2) and parse_grid("3×3") == (3, 3)
    for bad in ("4", "0x2", "axb", "", "3x"):
        with pytest.raises(ValueError):
            parse_grid(bad)


@pytest.mark.parametrize("name,billions", [
    ("ollama_chat/qwen2.5vl:7b", 7.0), ("openai/gemma-3-27b-it", 27.0), ("ollama/qwen3.5:2b", 2.0),
    ("openai/llava-v1.6-mistral-7b", 7.0), ("openai/my-model", None), ("ollama_chat/moondream", None),
])
def test_model_size_from_name(name, billions):
    assert model_billions(name) == billions


def test_auto_density_by_model_size_and_input_size():
    assert auto_density(4000, 3000, "ollama_chat/qwen3.5:2b", None) == "quick"
    assert auto_density(4000, 3000, "ollama_chat/qwen2.5vl:7b", None) == "light"
    assert auto_density(4000, 3000, "openai/gemma-3-27b-it", None) == "dense"
    # a 27B model on a small photo: tiles already at the encoder's size, no point in going finer
    assert auto_density(1200, 900, "openai/gemma-3-27b-it", 896) == "quick"
    assert auto_density(1200, 900, "mosaic_offline/ocr-448", 448) == "quick"


def test_a_stated_encoder_size_wins_over_the_table_and_the_offline_budget():
    from mosaic.tiles import input_px_for

    assert input_px_for("openai/my-finetune") is None
    assert input_px_for("openai/my-finetune", stated=896) == 896
    assert input_px_for("ollama_chat/gemma3:4b") == 896 and input_px_for("ollama_chat/gemma3:4b", stated=448) == 448
    assert input_px_for("mosaic_offline/ocr-448", 448, stated=1024) == 1024
    # what the backend reports comes before the table, after the user and the offline reader's own budget
    assert input_px_for("ollama_chat/gemma3:4b", reported=768) == 768
    assert input_px_for("ollama_chat/gemma3:4b", stated=448, reported=768) == 448
    assert input_px_for("ollama_chat/ocr-448", reported=768) == 448


def test_the_encoder_size_is_read_from_an_ollama_show_answer():
    from mosaic.backend import Backend, vision_image_size

    def ollama_encoder_px(model, api_base, timeout_s=3.0):
        return Backend.create(model, api_base).reported_encoder_px(timeout_s)

    # the shapes Ollama answers /api/show with: built-in vision (model_info) or a separate CLIP projector
    assert vision_image_size({"model_info": {"gemma3.vision.image_size": 896, "gemma3.vision.patch_size": 14}}) == 896
    assert vision_image_size({"model_info": {"llama.context_length": 4096},
                              "projector_info": {"clip.vision.image_size": 336}}) == 336
    for says_nothing in ({"model_info": {}}, {"model_info": {"x.vision.image_size": "896"}}, [], None,
                         {"model_info": {"x.vision.image_size": 5}}):
        assert vision_image_size(says_nothing) is None
    assert ollama_encoder_px("openai/gemma3", "http://127.0.0.1:9") is None  # not an Ollama model: not asked
    assert ollama_encoder_px("ollama_chat/gemma3", "http://127.0.0.1:9", timeout_s=2) is None  # nobody there


def test_a_density_is_coarsened_to_fit_a_small_image_and_says_so_but_a_grid_is_refused_with_the_size_it_needs():
    with pytest.raises(ValueError, match="too small for a 3×3 grid: it needs at least 192×192 px"):
        check_grid_fits(150, 150, 3, 3)
    with pytest.raises(ValueError, match="too small for a 4×2 grid: it needs at least 256×128 px"):
        choose_grid(200, 200, "light", "4x2", "x", None)
    assert choose_grid(100, 100, "light", None, "offline", None) == (1, 1, "light")
    assert choose_grid(160, 120, "quick", None, "x", None) == (2, 1, "quick")
    assert coarsened_note(160, 120, "quick", 2, 1) == ("the image (160×120) is too small for quick's 2×2 grid "
                                                       "(tiles under 64 px): reviewed as 2×1")
    assert coarsened_note(3000, 2000, "quick", *choose_grid(3000, 2000, "quick", None, "x", None)[:2]) is None
    assert coarsened_note(100, 100, "auto:quick", 1, 1) is None
    assert choose_grid(100, 100, "auto", None, "x", None)[:2] == (1, 1)
    for width, height in ((1, 1), (3, 3000), (63, 500), (20, 20)):  # no grid fits: the message does not suggest one
        for density in ("auto", "quick", "max"):
            with pytest.raises(ValueError, match=f"image \\({width}×{height}\\) is too small: Mosaic needs at least 64 px"):
                choose_grid(width, height, density, None, "x", None)
    assert choose_grid(64, 64, "auto", None, "x", None)[:2] == (1, 1)
    assert choose_grid(3000, 2000, "light", "5x1", "x", None) == (5, 1, "custom")
    with pytest.raises(ValueError, match="invalid density"):
        choose_grid(3000, 2000, "huge", None, "x", None)


def test_views_are_asked_tile_by_tile_with_each_crop_right_after_its_last_tile(tmp_path):
    from PIL import Image

    from mosaic.memo import BlobStore
    from mosaic.pipeline import prepare

    Image.new("RGB", (900, 600), (40, 90, 140)).save(tmp_path / "p.png")
    plan = prepare(str(tmp_path / "p.png"), "light", "3x2", ["text"], Backend(model="openai/x"), BlobStore(tmp_path / "b"))
    assert [v.id for v in plan.views_in_call_order()] == [
        "r1c1", "r1c2", "r1c1|r1c2", "r1c3", "r1c2|r1c3",
        "r2c1", "r1c1|r2c1", "r2c2", "r1c2|r2c2", "r2c1|r2c2",
        "r2c3", "r1c3|r2c3", "r2c2|r2c3",
    ]
    assert sorted(v.id for v in plan.views) == sorted(v.id for v in plan.views_in_call_order())
