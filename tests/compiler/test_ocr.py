"""The OCR pieces the int8 accuracy table is built from (compiler/ocr.py, text_images.py):
hand-computed boxes, matches and CTC strings, and the fp32 pipeline on a real page with ONNX
Runtime. No model is compiled here."""

import numpy as np
import pytest

from tilecc.compiler import ocr, text_images
from tilecc.compiler.assets import model_path
from tilecc.compiler.errors import InputError
from tilecc.compiler.reference import ort_session


def test_match_boxes_counts_a_miss_and_a_false_positive():
    reference = [[0, 0, 10, 10], [20, 0, 30, 10], [0, 20, 10, 30]]
    predicted = [
        [1, 0, 11, 10],  # IoU 90 / 110 with the first
        [20, 0, 30, 10],  # the second, exactly
        [50, 50, 60, 60],  # nothing there: a false positive; the third is missed
    ]
    score = ocr.match_boxes(np.array(predicted), np.array(reference))
    assert (score.matched, score.predicted, score.reference) == (2, 3, 3)
    assert score.precision == pytest.approx(2 / 3)
    assert score.recall == pytest.approx(2 / 3)
    assert score.f1 == pytest.approx(2 / 3)


def test_match_boxes_iou_threshold_is_inclusive():
    reference = np.array([[0, 0, 10, 10]])
    assert ocr.match_boxes(np.array([[0, 0, 10, 20]]), reference).matched == 1  # IoU 0.5
    assert ocr.match_boxes(np.array([[0, 0, 10, 21]]), reference).matched == 0  # 100 / 210


def test_match_boxes_is_one_to_one():
    score = ocr.match_boxes(np.array([[0, 0, 10, 10], [0, 0, 10, 11]]), np.array([[0, 0, 10, 10]]))
    assert (score.matched, score.precision, score.recall) == (1, 0.5, 1.0)


def test_match_boxes_empty_sides():
    none = np.zeros((0, 4), np.int64)
    one = np.array([[0, 0, 5, 5]])
    assert ocr.match_boxes(none, none).f1 == 1.0
    assert ocr.match_boxes(none, one).f1 == 0.0
    assert ocr.match_boxes(one, none).f1 == 0.0


def test_box_scores_add_up_as_a_micro_average():
    total = ocr.BoxScore(2, 3, 3) + ocr.BoxScore(0, 0, 0) + ocr.BoxScore(1, 1, 2)
    assert (total.matched, total.predicted, total.reference) == (3, 4, 5)
    assert total.f1 == pytest.approx(2 * 0.75 * 0.6 / 1.35)


def synthetic_map():
    prob = np.zeros((40, 60), np.float32)
    prob[5:10, 10:30] = 0.9  # A: 5 x 20
    prob[20:28, 40:52] = 0.8  # B: 8 x 12
    prob[36:40, 0:10] = 0.7  # C: 4 x 10, on the bottom edge
    prob[37, 50] = 0.95  # one pixel: smaller than min_side
    prob[30:35, 20:31] = 0.4  # above the pixel threshold, below the box score threshold
    return prob


def test_boxes_from_map_two_blobs_unclipped_and_clipped():
    # unclip distance round(w * h * 1.5 / (2 * (w + h))): A 150 / 50 = 3, B 144 / 40 -> 4,
    # C 60 / 28 -> 2 (clipped at the map's left and bottom edges)
    boxes = ocr.boxes_from_map(synthetic_map())
    assert boxes.tolist() == [[7, 2, 33, 13], [36, 16, 56, 32], [0, 34, 12, 40]]


def test_boxes_from_map_takes_det_output_layout_and_empty_maps():
    prob = synthetic_map()
    assert ocr.boxes_from_map(prob[None, None]).tolist() == ocr.boxes_from_map(prob).tolist()
    assert ocr.boxes_from_map(np.zeros((8, 8), np.float32)).shape == (0, 4)


def test_ctc_decode_collapses_repeats_and_drops_blanks():
    charset = ["", "a", "b", " "]
    best = [0, 1, 1, 0, 1, 2, 2, 3, 0, 0]  # blank a a | blank | a b b space blank blank
    scores = np.full((len(best), len(charset)), 0.01, np.float32)
    scores[np.arange(len(best)), best] = 0.97
    assert ocr.ctc_decode(scores, charset) == "aab "
    assert ocr.ctc_decode(scores[None], charset) == "aab "  # rec's (1, T, C)
    assert ocr.ctc_decode(scores[:, [0, 3, 2, 1]][[0, 8]], charset) == ""


def test_ctc_decode_refuses_another_class_count():
    with pytest.raises(InputError, match="4 classes, the character set 3"):
        ocr.ctc_decode(np.zeros((5, 4), np.float32), ["", "a", "b"])


def test_rec_charset_has_blank_first_and_space_last():
    charset = ocr.rec_charset(model_path("ppocr-rec"))
    assert len(charset) == 6625  # PP-OCRv4 rec's output classes
    assert charset[0] == "" and charset[-1] == " " and "A" in charset


def test_rec_input_keeps_aspect_and_pads_right():
    line = np.full((24, 48, 3), 255, np.uint8)  # 2:1 -> 96 x 48
    x = ocr.rec_input(line)
    assert x.shape == (1, 3, 48, 320) and x.dtype == np.float32
    assert np.all(x[..., :96] == 1.0) and np.all(x[..., 96:] == 0.0)
    wide = ocr.rec_input(np.zeros((10, 1000, 3), np.uint8), width=640)  # squeezed to 640
    assert wide.shape == (1, 3, 48, 640) and np.all(wide == -1.0)


def test_det_input_normalizes_like_pp_ocr():
    x = ocr.det_input(np.full((4, 6, 3), 255, np.uint8))
    assert x.shape == (1, 3, 4, 6)
    assert x[0, :, 0, 0] == pytest.approx(
        [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225]
    )


def test_crop_lines_maps_canvas_boxes_to_the_source():
    image = np.arange(100 * 80 * 3, dtype=np.uint8).reshape(100, 80, 3)
    (crop,) = ocr.crop_lines(image, np.array([[10, 10, 20, 20]]), scale=0.5)
    assert np.array_equal(crop, image[20:40, 20:40])


def test_match_rate():
    assert ocr.match_rate(["a", "b", ""], ["a", "c", ""]) == pytest.approx(2 / 3)
    assert ocr.match_rate([], []) == 1.0
    with pytest.raises(InputError):
        ocr.match_rate(["a"], [])


def test_edit_distance_and_char_error_rate():
    assert ocr.edit_distance("kitten", "sitting") == 3  # k->s, e->i, +g
    assert ocr.edit_distance("", "abc") == 3 and ocr.edit_distance("abc", "abc") == 0
    assert ocr.char_error_rate(["abc", "xy"], ["abd", "xy"]) == pytest.approx(1 / 5)
    assert ocr.char_error_rate([], []) == 0.0


def test_letterbox_scales_to_fit_and_pads_with_the_background():
    image = np.full((50, 100, 3), 200, np.uint8)
    image[20:30, 40:60] = 0
    canvas, scale = text_images.letterbox(image, 80)
    assert scale == 0.8 and canvas.shape == (80, 80, 3)
    assert np.all(canvas[40:] == 200)  # below the scaled image (40 rows): the border colour
    assert canvas[20, 40].max() < 50  # the dark patch, scaled


def overlap(a, b):
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a, b
    return min(ax1, bx1) > max(ax0, bx0) and min(ay1, by1) > max(ay0, by0)


def test_views_are_split_without_shared_regions():
    views = text_images.VIEWS
    assert {v.split for v in views} == set(text_images.SPLITS)
    assert all(v.source in text_images.SOURCES for v in views)
    for a in views:
        for b in views:
            if a.split != b.split and a.source == b.source:
                assert not overlap(a.region, b.region), f"{a.name} and {b.name} overlap"
    assert overlap((0, 0, 1, 1), (0.5, 0.5, 1, 1)) and not overlap((0, 0, 0.5, 1), (0.5, 0, 1, 1))


def test_fp32_pipeline_on_a_real_page_with_onnx_runtime():
    image = text_images.load_rgb("skimage-page")  # a photographed book page
    canvas, scale = text_images.letterbox(image, 640)
    det = ort_session(model_path("ppocr-det"), threads=2)
    (prob,) = det.run(None, {"x": ocr.det_input(canvas)})
    boxes = ocr.boxes_from_map(prob)
    assert len(boxes) >= 3  # the title, paragraph lines, the code line
    rec = ort_session(model_path("ppocr-rec"), threads=2)
    charset = ocr.rec_charset(model_path("ppocr-rec"))
    crops = ocr.crop_lines(image, boxes[:3], scale)
    strings = [
        ocr.ctc_decode(rec.run(None, {"x": ocr.rec_input(c, 960)})[0], charset) for c in crops
    ]
    assert "segmentation" in strings[0]  # "Region-based segmentation", the title
    assert all(s for s in strings[1:])
