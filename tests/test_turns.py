from speakerlm.turns import Turn, renumber_anonymous, target_turns


def test_targets_name_registered_and_number_the_rest_by_first_appearance():
    ref = [Turn("s7", "hi", 0, 1), Turn("s2", "yo", 1, 2), Turn("s9", "hey", 2, 3), Turn("s2", "ok", 3, 4)]
    assert [t.speaker for t in target_turns(ref)] == ["spk 0", "spk 1", "spk 2", "spk 1"]
    assert [t.speaker for t in target_turns(ref, registered=["s2"])] == ["spk 0", "s2", "spk 1", "s2"]


def test_targets_are_chronological():
    ref = [Turn("b", "second", 2, 3), Turn("a", "first", 0, 1)]
    assert [t.text for t in target_turns(ref)] == ["first", "second"]


def test_anonymous_labels_are_renumbered_by_first_appearance_and_names_kept():
    turns = [Turn("spk 3", "a"), Turn("Alice", "b"), Turn("spk 1", "c"), Turn("spk 3", "d")]
    assert [t.speaker for t in renumber_anonymous(turns)] == ["spk 0", "Alice", "spk 1", "spk 0"]


def test_turns_round_trip_through_dicts():
    turn = Turn("Alice", "hi", 0.5, 1.25)
    assert Turn.from_dict(turn.to_dict()) == turn
