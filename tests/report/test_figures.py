import numpy as np

from densbench.report.figures import tile


def test_tile_places_each_image_in_its_cell_with_a_blank_pixel_between():
    images = np.arange(1, 13, dtype=float).reshape(3, 4)  # three 2x2 images
    out = tile(images, (2, 2), ncols=2)
    assert out.shape == (5, 5)
    np.testing.assert_array_equal(out[:2, :2], [[1, 2], [3, 4]])
    np.testing.assert_array_equal(out[:2, 3:], [[5, 6], [7, 8]])
    np.testing.assert_array_equal(out[3:, :2], [[9, 10], [11, 12]])
    assert not out[2].any() and not out[:, 2].any() and not out[3:, 3:].any()


def test_tile_keeps_colour_channels():
    images = np.random.default_rng(0).random((2, 3 * 2 * 3))
    out = tile(images, (3, 2, 3), ncols=2)
    assert out.shape == (3, 5, 3)
    np.testing.assert_array_equal(out[:, 3:], images[1].reshape(3, 2, 3))
