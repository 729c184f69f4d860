"""Finding the digit among clutter: paper rulings, form boxes, specks, blots and stray marks.

normalise.py makes each upload's ink (the digit bright on black, background and noise taken off)
and hands it here before it looks for the digit's bounding box. :func:`clear` takes off what is
not the digit, in place, so the box is the digit's and the crop holds nothing else. It works on
the ink above LINE_LEVEL, unfiltered, on a grid of about ANALYSIS_SIDE x ANALYSIS_SIDE cells, in
images of at least MIN_SIDE px a side (smaller ones, MNIST's 28x28 digits among them, are taken
as they are, so training, which normalises MNIST through the same code, sees them unchanged):

1. **Paper lines**: thin straight lines nearly horizontal or vertical that cross the whole image
   (ruled and squared paper, a margin line), found by a Hough transform restricted to tilts up to
   MAX_TILT. They are taken off only where at least two parallel ones cross the image (a single
   straight stroke from edge to edge can be the digit's own), and where the digit's strokes cross
   a line the crossing stays.
2. **Frames**: a component whose box's four sides are full of its own ink (a form box, a row of
   comb boxes) loses its sides and inner walls; a digit touching it keeps its strokes.
3. **Rules**: a single long thin line (an underline, the base of comb boxes) goes where it is
   RULE_RATIO times as long as the digit left without it.
4. **The digit**: of the 8-connected components left, the heaviest, preferring one that neither
   touches the image's border nor is a ruler, with the components near it (a digit's strokes need
   not touch). Specks, blots, stray marks and marks at the border go. A component nearly as heavy
   and as large as the digit, apart from it, is a second digit: the image has no single digit (a
   NoDigitFound message), as it has none when only lines and frames were there.

What goes is set to 0 in the ink, and what stays is stretched again to full contrast (a black box
around a pencil digit set the contrast before). An image of one component and no lines comes out
exactly as it went in.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

MIN_SIDE = 64  # smaller images (MNIST's 28x28 among them) are taken as they are
ANALYSIS_SIDE = 256  # lines and components are found on a grid of about this many cells squared
LINE_LEVEL = round(255 * 0.12)  # ink above this counts towards a line: rulings are pale
MAX_TILT = 3.0  # degrees: the most a photographed page's lines lean
TILT_STEP = 0.25  # degrees: a line of 256 cells stays within one cell of its bin
LINE_COVER = 0.6  # a paper line's ink covers at least this share of the image across ...
LINE_REACH = 0.04  # ... and reaches this close (share of the side) to both of its ends, ...
LINE_BREADTH = 0.05  # ... and is at most this share of the image's side broad (at least 2 cells)
RULE_RATIO = 2.0  # a single long line (an underline, a comb's base) goes if this many times as long as the digit
FRAME_SIDE_COVER = 0.85  # each side of a frame is this full of its own ink
STROKE_OVER_LINE = 1.5  # near the digit, ink this many times the lines' (their median) is a stroke on them
NEAR = 0.3  # a component this close to the digit (share of the digit's longer side) is part of it
SECOND_DIGIT_MASS = 0.4  # a component with this share of the digit's ink ...
SECOND_DIGIT_SIZE = 0.6  # ... and this share of its longer side is as large as a digit: ...
APART = 0.6  # ... part of the digit up to this far from it (share of its longer side), a second digit beyond
PREFER_INSIDE = 0.25  # a digit is preferred to heavier marks (at the border, rulers) down to this share of their
                      # ink or of their longer side
RULER_LENGTH = 0.6  # a ruler (an underline, a comb's base and ticks, a table rule) is at least this share of
RULER_BREADTH = 0.12  # the image long, and at most this share of its length broad

SEVERAL = ("no digit found: the image holds several marks the size of a digit, apart (several digits?); "
           "send one digit an image")
ONLY_LINES = "no digit found: the image holds only lines or boxes"


def clear(ink: np.ndarray, smooth: np.ndarray, threshold: int, which: np.ndarray) -> list[str | None]:
    """Take the clutter off each image of a stack marked in ``which``, in place: ``ink`` (N, H, W),
    the digit bright on black, and ``smooth``, its median-filtered copy whose pixels above
    ``threshold`` make the digit's mask. Return, for each image, None, or why it has no single
    digit (a NoDigitFound message). Images under MIN_SIDE a side are left as they are."""
    problems: list[str | None] = [None] * len(ink)
    if min(ink.shape[1:]) >= MIN_SIDE:
        for n in np.flatnonzero(which).tolist():
            problems[n] = clear_one(ink[n], smooth[n], threshold)
    return problems


def clear_one(ink: np.ndarray, smooth: np.ndarray, threshold: int) -> str | None:
    """Take the clutter off one image (see the module's docstring), in place."""
    cell = max(1, math.ceil(math.sqrt(ink.size) / ANALYSIS_SIDE))
    # Lines and components are found in all the ink above the line level, unfiltered: rulings are
    # pale, and the median filter breaks thin strokes.
    inked = ink > LINE_LEVEL
    grid = cell_means(inked.view(np.uint8) * np.uint8(255), cell) > 0  # cells with any such ink
    shade = cell_means(ink, cell).astype(np.float64)  # the ink in each cell, for components' mass
    removed = np.zeros(grid.shape, bool)  # cells of lines and frames
    lines = straight_lines(grid)
    paper = {horizontal: (tilt, bins[reaching]) for horizontal, (tilt, bins, reaching, _) in lines.items()}
    if any(runs(bins) >= 2 for _, bins in paper.values()):
        removed |= line_cells(grid, paper)
    labels, count = components(grid & ~removed)
    sides = frame_sides(labels, count)
    if sides.any():  # frames open: their sides go, what they held (a digit touching them) stays
        removed |= sides
        labels, count = components(grid & ~removed)
    rules = {horizontal: (tilt, bins) for horizontal, (tilt, bins, _, _) in lines.items()}
    edges = edge_cells(inked, cell)
    if rules and count:  # a single long line goes where it is far longer than the digit left without it
        rule = line_cells(grid & ~removed, rules)
        rest, left = components(grid & ~removed & ~rule)
        longest = max(lines[horizontal][3] for horizontal in rules)
        if left and longest >= RULE_RATIO * digit_side(rest, left, shade, edges):
            removed |= rule
            labels, count = rest, left
    if count <= 1 and not removed.any():
        return None
    if count == 0:
        return ONLY_LINES
    keep, problem = choose(labels, count, masses(labels, count, shade), edges)
    if problem:
        return problem
    if keep.all() and not removed.any():
        return None
    # What stays: the digit's cells and their neighbours (the faint edges of its strokes) but for
    # lines and frames; the rest goes, the faint edges of what was dropped with it. Near the digit,
    # what is much darker than the lines (the strokes of a pen on pale rulings) stays on them too.
    digit = np.concatenate([[False], keep])[labels]
    around = grown_by(digit, 1)
    stays = grown(digit | (around & ~removed), cell, ink.shape)
    if removed.any():
        lines_ink = grown(removed, cell, ink.shape) & inked
        near_digit = grown(grown_by(digit, 2), cell, ink.shape)
        stays |= lines_ink & near_digit & (ink > STROKE_OVER_LINE * np.median(ink[lines_ink]))
    gone = ~stays
    ink[gone] = 0
    smooth[gone] = 0
    peak = int(smooth.max())
    if peak <= threshold and ink.max() <= threshold:
        return ONLY_LINES if removed.any() else None
    if 0 < peak < 255:  # what set the contrast went: stretch what stays
        scale = 255.0 / peak
        ink[:] = np.clip(ink * scale, 0, 255).round().astype(np.uint8)
        smooth[:] = np.clip(smooth * scale, 0, 255).round().astype(np.uint8)
    return None


def digit_side(labels: np.ndarray, count: int, shade: np.ndarray, edges: np.ndarray) -> int:
    """The longer side, in cells, of the digit :func:`choose` finds among the components (the ink
    of each cell in ``shade``)."""
    keep, _ = choose(labels, count, masses(labels, count, shade), edges)
    return box_of(boxes_of(labels, count)[keep])[1]


def masses(labels: np.ndarray, count: int, shade: np.ndarray) -> np.ndarray:
    """Each component's ink: the sum of ``shade`` over its cells."""
    return np.bincount(labels.ravel(), shade.ravel(), count + 1)[1:]


def cell_means(image: np.ndarray, cell: int) -> np.ndarray:
    """The mean of a uint8 image over cells of ``cell`` x ``cell`` px (the last ones over the pixels
    they have), rounded: Pillow's ``reduce``."""
    return image if cell == 1 else np.asarray(Image.fromarray(image).reduce(cell))


def grown(cells: np.ndarray, cell: int, shape: tuple[int, int]) -> np.ndarray:
    """A bool grid of cells of ``cell`` x ``cell`` px as a mask of the image's ``shape``."""
    if cell == 1:
        return cells
    grid = Image.fromarray(cells.view(np.uint8))
    return np.asarray(grid.resize((grid.width * cell, grid.height * cell), Image.Resampling.NEAREST),
                      bool)[: shape[0], : shape[1]]


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The 8-connected components of a 2-D bool mask: labels 1..count (0 where the mask is False),
    and count. The mask's runs (of True along each row) are joined to the runs they touch in the
    row above, diagonals included; each run takes the least label of those it is joined to, then
    the label its label has (pointer jumping), until nothing changes."""
    height, width = mask.shape
    padded = np.zeros((height, width + 2), np.int8)
    padded[:, 1:-1] = mask
    steps = np.diff(padded, axis=1)
    starts_row, starts = np.nonzero(steps == 1)  # a run covers columns start .. end - 1
    ends = np.nonzero(steps == -1)[1]
    count = len(starts)
    labels = np.zeros(mask.shape, np.int32)
    if count == 0:
        return labels, 0
    # Each run touches the runs of the row above that start at most one column after it and end at
    # most one column before it: a contiguous range of them, found by binary search on (row, column)
    # keys.
    stride = width + 2
    first = np.searchsorted(starts_row * stride + ends, (starts_row - 1) * stride + starts, side="left")
    last = np.searchsorted(starts_row * stride + starts, (starts_row - 1) * stride + ends, side="right")
    touching = np.maximum(last - first, 0)
    below = np.repeat(np.arange(count), touching)
    above = np.repeat(first - np.cumsum(touching) + touching, touching) + np.arange(touching.sum())
    run_labels = np.arange(count)
    while True:
        least = run_labels.copy()
        np.minimum.at(least, below, run_labels[above])
        np.minimum.at(least, above, run_labels[below])
        least = least[least]
        if np.array_equal(least, run_labels):
            break
        run_labels = least
    roots, numbers = np.unique(run_labels, return_inverse=True)
    labels[mask] = np.repeat(numbers.astype(np.int32) + 1, ends - starts)
    return labels, len(roots)


def boxes_of(labels: np.ndarray, count: int) -> np.ndarray:
    """Each component's bounding box on the grid, (count, 4): top, left, bottom, right (inclusive)."""
    rows, cols = np.nonzero(labels)
    which = labels[rows, cols] - 1
    boxes = np.empty((count, 4), np.int64)
    boxes[:, :2] = np.iinfo(np.int64).max
    boxes[:, 2:] = -1
    np.minimum.at(boxes[:, 0], which, rows)
    np.minimum.at(boxes[:, 1], which, cols)
    np.maximum.at(boxes[:, 2], which, rows)
    np.maximum.at(boxes[:, 3], which, cols)
    return boxes


def frame_sides(labels: np.ndarray, count: int) -> np.ndarray:
    """The cells of the frames' sides (a bool grid): a frame is a component at least 5 cells a side
    each of whose box's four sides is at least FRAME_SIDE_COVER full of its own cells, within a band
    of 5% of the box's shorter side (at least one cell); a form box, a row of comb boxes, a table's
    cell."""
    sides = np.zeros(labels.shape, bool)
    if count == 0:
        return sides
    for number, (top, left, bottom, right) in enumerate(boxes_of(labels, count).tolist(), start=1):
        if bottom - top < 4 or right - left < 4:
            continue
        own = labels[top : bottom + 1, left : right + 1] == number
        rows = cols = max(1, round(0.05 * min(own.shape)))  # a wall's breadth: a long comb's ends are no broader
        bands = (own[:rows].any(axis=0), own[-rows:].any(axis=0), own[:, :cols].any(axis=1), own[:, -cols:].any(axis=1))
        if all(band.mean() >= FRAME_SIDE_COVER for band in bands):
            frame = np.zeros(own.shape, bool)
            frame[:rows], frame[-rows:], frame[:, :cols], frame[:, -cols:] = True, True, True, True
            # Its walls inside too (comb boxes, a table's cells): full rows or columns of its own cells.
            frame[own.mean(axis=1) >= FRAME_SIDE_COVER] = True
            frame[:, own.mean(axis=0) >= FRAME_SIDE_COVER] = True
            sides[top : bottom + 1, left : right + 1] |= own & frame
    return sides


def edge_cells(mask: np.ndarray, cell: int) -> np.ndarray:
    """The grid cells that hold ink (``mask``) on the image's outermost rows and columns."""
    height, width = mask.shape
    cells = np.zeros((-(-height // cell), -(-width // cell)), bool)
    cells[0, np.flatnonzero(mask[0]) // cell] = True
    cells[-1, np.flatnonzero(mask[-1]) // cell] = True
    cells[np.flatnonzero(mask[:, 0]) // cell, 0] = True
    cells[np.flatnonzero(mask[:, -1]) // cell, -1] = True
    return cells


def choose(labels: np.ndarray, count: int, mass: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Which components make the digit (a bool per component), or why there is no single digit;
    ``edges`` marks the cells with ink at the image's border."""
    if count == 0:
        return np.zeros(0, bool), ONLY_LINES
    boxes = boxes_of(labels, count)
    height, width = labels.shape
    at_border = np.bincount(labels[edges], minlength=count + 1)[1:] > 0
    tall, wide = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    ruling = (((wide >= RULER_LENGTH * width) & (tall <= RULER_BREADTH * wide))
              | ((tall >= RULER_LENGTH * height) & (wide <= RULER_BREADTH * tall)))
    # Marks at the border and rulers are the digit only when nothing else can be, and join no digit
    # that is neither.
    marked = at_border | ruling
    sides = np.maximum(tall, wide)
    heaviest = np.argmax(mass)
    preferred = ~marked & ((mass >= PREFER_INSIDE * mass[heaviest]) | (sides >= PREFER_INSIDE * sides[heaviest]))
    pool = preferred if preferred.any() else np.ones(count, bool)
    main = int(np.flatnonzero(pool)[np.argmax(mass[pool])])
    candidates = ~marked | marked[main]
    keep = np.zeros(count, bool)
    keep[main] = True
    while True:  # parts as large as a digit's, up to APART from what is kept, are the digit's
        box, side = box_of(boxes[keep])
        large = (candidates & ~keep & (mass >= SECOND_DIGIT_MASS * mass[keep].sum())
                 & (sides >= SECOND_DIGIT_SIZE * side))
        joining = large & (gaps(boxes, box) <= APART * side)
        if not joining.any():
            break
        keep |= joining
    if large.any():  # a part as large as the digit, apart from it: a second digit
        return keep, SEVERAL
    # Smaller parts (a detached stroke, a dot) up to NEAR from the digit, in one pass: specks do not
    # chain the digit to more specks.
    keep |= candidates & (gaps(boxes, box) <= NEAR * side)
    return keep, None


def box_of(boxes: np.ndarray) -> tuple[np.ndarray, int]:
    """The box around ``boxes`` (K, 4) and its longer side."""
    box = np.array([boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()])
    return box, int(max(box[2] - box[0], box[3] - box[1]) + 1)


def gaps(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """How far each of ``boxes`` (K, 4) lies from ``box``, in cells (the larger of the vertical and
    horizontal gaps; 0 or less where they overlap)."""
    return np.maximum(np.maximum(box[0] - boxes[:, 2], boxes[:, 0] - box[2]),
                      np.maximum(box[1] - boxes[:, 3], boxes[:, 1] - box[3]))


def straight_lines(grid: np.ndarray) -> dict:
    """The straight lines through the ink cells of ``grid`` that cross at least LINE_COVER of it,
    nearly horizontal (True) and nearly vertical (False): for each direction that has any, the tilt
    that puts the most cells on them, their bins (offsets across the direction, rounded), whether
    each reaches both ends of the grid, and the most cells on one."""
    rows, cols = np.nonzero(grid)
    found = {}
    for horizontal in (True, False):
        along, across = (cols, rows) if horizontal else (rows, cols)
        length, breadth = (grid.shape[1], grid.shape[0]) if horizontal else (grid.shape[0], grid.shape[1])
        lines = hough_lines(along, across, length, breadth) if may_hold_lines(grid, horizontal) else None
        if lines is not None:
            found[horizontal] = lines
    return found


COARSE = 4  # cells of the grid a side in a cell of the quick look for lines
COARSE_TILTS = np.tan(np.radians(np.arange(-MAX_TILT, MAX_TILT + 0.5, 1.0)))


def may_hold_lines(grid: np.ndarray, horizontal: bool) -> bool:
    """A quick look for lines in one direction, on a grid COARSE times coarser and at 1 degree tilt
    steps: whether two adjacent bins of some tilt hold LINE_COVER of the coarse grid's length. Every
    line hough_lines finds passes it (a line's cells fall into at most two adjacent coarse bins);
    most images without lines (a large digit) do not, and skip the fine search."""
    coarse = cell_means(grid.view(np.uint8) * np.uint8(255), COARSE) > 0 if min(grid.shape) >= 4 * COARSE else grid
    rows, cols = np.nonzero(coarse)
    if not len(rows):
        return False
    along, across = (cols, rows) if horizontal else (rows, cols)
    length, breadth = (coarse.shape[1], coarse.shape[0]) if horizontal else (coarse.shape[0], coarse.shape[1])
    margin = int(np.ceil(np.abs(COARSE_TILTS).max() * length)) + 1
    span = breadth + 2 * margin + 1
    offsets = np.rint(across[None, :] - along[None, :] * COARSE_TILTS[:, None]).astype(np.int64) + margin
    counts = np.bincount((offsets + (np.arange(len(COARSE_TILTS)) * span)[:, None]).ravel(),
                         minlength=len(COARSE_TILTS) * span).reshape(len(COARSE_TILTS), span)
    return bool((counts[:, :-1] + counts[:, 1:] >= LINE_COVER * length).any())


def line_cells(grid: np.ndarray, lines: dict) -> np.ndarray:
    """The cells of ``grid`` on ``lines`` ({horizontal: (tilt, bins)}), but where a stroke crosses a
    line: a line cell with other ink on both sides of the line, within three cells, stays."""
    cells = np.zeros(grid.shape, bool)
    for horizontal, (tilt, bins) in lines.items():
        cells |= on_lines(grid, horizontal, tilt, bins)
    other = grid & ~cells
    for horizontal in lines:
        axis = 0 if horizontal else 1
        cells &= ~(shifted_any(other, axis, 3, 1) & shifted_any(other, axis, 3, -1))
    return cells


def grown_by(cells: np.ndarray, reach: int) -> np.ndarray:
    """``cells`` and the cells within ``reach`` of them (a square around each)."""
    for axis in (0, 1):
        cells = cells | shifted_any(cells, axis, reach, 1) | shifted_any(cells, axis, reach, -1)
    return cells


def shifted_any(mask: np.ndarray, axis: int, reach: int, direction: int) -> np.ndarray:
    """Whether any of the ``reach`` cells before (direction 1) or after (-1) each cell along ``axis``
    is set in ``mask``."""
    out = np.zeros_like(mask)
    size = mask.shape[axis]
    for step in range(1, reach + 1):
        if step >= size:
            break
        source = [slice(None)] * 2
        target = [slice(None)] * 2
        if direction > 0:
            source[axis], target[axis] = slice(0, size - step), slice(step, size)
        else:
            source[axis], target[axis] = slice(step, size), slice(0, size - step)
        out[tuple(target)] |= mask[tuple(source)]
    return out


TILTS = np.tan(np.radians(np.arange(-MAX_TILT, MAX_TILT + TILT_STEP / 2, TILT_STEP)))


def hough_lines(along: np.ndarray, across: np.ndarray, length: int, breadth: int):
    """The lines through the ink cells (coordinates ``along`` and ``across`` a direction) that cross
    at least LINE_COVER of the grid (``length`` cells): the tilt that puts the most cells on such
    lines, the line bins (offsets ``across``, rounded) at that tilt, whether each has ink within
    LINE_REACH of both ends, and the most cells on one; None if there is none."""
    margin = int(np.ceil(np.abs(TILTS).max() * length)) + 1
    span = breadth + 2 * margin
    offsets = np.rint(across[None, :] - along[None, :] * TILTS[:, None]).astype(np.int64) + margin
    bins = offsets + (np.arange(len(TILTS)) * span)[:, None]
    counts = np.bincount(bins.ravel(), minlength=len(TILTS) * span).reshape(len(TILTS), span)
    reach = max(1, round(LINE_REACH * length))
    starts = np.bincount(bins[:, along < reach].ravel(), minlength=len(TILTS) * span).reshape(counts.shape)
    ends = np.bincount(bins[:, along >= length - reach].ravel(), minlength=len(TILTS) * span).reshape(counts.shape)
    lines = counts >= LINE_COVER * length
    if not lines.any():
        return None
    tilt = int(np.argmax(np.where(lines, counts, 0).sum(axis=1)))
    chosen = np.flatnonzero(lines[tilt])
    # A line is thin: a broad band of full bins is a stroke (a thick bar, a straight stem), not a line.
    run_of = line_numbers(chosen)
    chosen = chosen[np.bincount(run_of)[run_of] <= max(2, LINE_BREADTH * length)]
    if not len(chosen):
        return None
    reaching = (starts[tilt, chosen] > 0) & (ends[tilt, chosen] > 0)
    return tilt, chosen - margin, reaching, int(counts[tilt, chosen].max())


def line_numbers(bins: np.ndarray) -> np.ndarray:
    """For each of a sorted array of line bins, the number (from 1) of the line it is part of:
    adjacent bins are one line."""
    return np.cumsum(np.concatenate([[1], np.diff(bins) > 1]))


def runs(bins: np.ndarray) -> int:
    """How many separate lines a sorted array of line bins makes."""
    return int(line_numbers(bins)[-1]) if len(bins) else 0


def on_lines(grid: np.ndarray, horizontal: bool, tilt: int, bins: np.ndarray) -> np.ndarray:
    """The ink cells of ``grid`` that lie in the line bins ``bins`` at tilt number ``tilt``, or in the
    bins beside them: a line whose tilt falls between two steps, or blurred over two cells, leaves
    pieces of itself there."""
    rows, cols = np.nonzero(grid)
    along, across = (cols, rows) if horizontal else (rows, cols)
    offsets = np.rint(across - along * TILTS[tilt]).astype(np.int64)
    chosen = np.isin(offsets, np.concatenate([bins - 1, bins, bins + 1]))
    cells = np.zeros(grid.shape, bool)
    cells[rows[chosen], cols[chosen]] = True
    return cells
