"""tvad.corpus.timelines: association of per-frame sightings into tracks and their aggregation into
timelines (entry, exit, regions, direction, speed, events)."""

from __future__ import annotations

from tvad.corpus import Sighting, associate, build_timelines, timeline_from_centroids, trajectory_phrasings


def test_association_keeps_identities_through_crossing_and_gap():
    # two people cross horizontally at different heights; B is missing in frames 5-6
    frames = []
    for t in range(12):
        dets = [Sighting(t, (10 + 10 * t, 40, 22 + 10 * t, 70), category="person")]
        if t not in (5, 6):
            dets.append(Sighting(t, (140 - 10 * t, 50, 152 - 10 * t, 80), category="person"))
        frames.append(dets)
    tracks = associate(frames, frame_size=(120, 160))
    assert len(tracks) == 2
    for tr in tracks:
        xs = [d.center[0] for d in tr]
        assert xs == sorted(xs) or xs == sorted(xs, reverse=True)  # no switch at the crossing
    assert sorted(len(t) for t in tracks) == [10, 12]


def test_association_uses_annotator_ids_when_all_present():
    frames = [[Sighting(t, (t, 0, t + 5, 5), hint="a"), Sighting(t, (t + 1, 0, t + 6, 5), hint="b")] for t in range(4)]
    tracks = associate(frames)
    assert [{d.hint for d in tr} for tr in tracks] == [{"a"}, {"b"}]


def test_events_turn_stop_and_speed_up():
    cents = [(20 + 4 * t, 100) for t in range(8)]  # right, slowly
    cents += [(48, 100 - 4 * (t + 1)) for t in range(6)]  # turn up
    cents += [(48, 76)] * 6  # stop
    boxes = [(x - 5, y - 10, x + 5, y + 10) for x, y in cents]
    tl = timeline_from_centroids(cents, (200, 200), boxes=boxes)
    kinds = [(e.kind, e.detail) for e in tl.events]
    assert ("turn", "up") in kinds and ("stop", "") in kinds, kinds
    text = trajectory_phrasings(tl)[0]
    assert "turns upward at frame" in text and "stops at frame" in text, text
    # walking -> running for a person
    cents = [(10 + 2 * t, 100) for t in range(8)] + [(24 + 12 * (t + 1), 100) for t in range(8)]
    dets = [Sighting(i, (x - 5, y - 10, x + 5, y + 10), category="person") for i, (x, y) in enumerate(cents)]
    tl = build_timelines([[d] for d in dets], frame_size=(200, 240))[0]
    assert any(e.kind == "speed_up" and e.detail == "walking -> running" for e in tl.events), tl.events
