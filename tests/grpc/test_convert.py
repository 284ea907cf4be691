"""grpc_service.convert: JSON ↔ Value, timestamps, enums and the proto3-default rules."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import hypothesis
import pytest
from google.protobuf import field_mask_pb2, struct_pb2, timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

from app.errors import ValidationFailed
from app.models import JobStatus, WorkerStatus, WorkerType
from grpc_service import convert
from grpc_service.gen import job_queue_pb2 as pb

EXACT = 2**53
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-EXACT, max_value=EXACT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
properties = hypothesis.settings(max_examples=300, database=None, deadline=None)


def integral_floats_as_ints(value: Any) -> Any:
    """What a JSON value becomes after a trip through Value's doubles."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= EXACT:
        return value if math.copysign(1.0, value) < 0 and value == 0 else int(value)
    if isinstance(value, list):
        return [integral_floats_as_ints(item) for item in value]
    if isinstance(value, dict):
        return {key: integral_floats_as_ints(item) for key, item in value.items()}
    return value


def canonical(value: Any) -> str:
    """JSON text that tells true from 1 and 1 from 1.0, whatever the key order."""
    return json.dumps(value, sort_keys=True, allow_nan=False)


def over_the_wire(value: struct_pb2.Value) -> struct_pb2.Value:
    return struct_pb2.Value.FromString(value.SerializeToString())


@properties
@given(json_values)
def test_json_survives_a_trip_through_value(value: Any) -> None:
    back = convert.from_value(over_the_wire(convert.to_value(value)))
    assert canonical(back) == canonical(integral_floats_as_ints(value))


@properties
@given(json_values | st.floats(allow_nan=False, allow_infinity=False))
def test_value_survives_a_trip_through_json(value: Any) -> None:
    message = convert.to_value(value)
    assert convert.to_value(convert.from_value(message)) == message


@properties
@given(st.integers(min_value=-EXACT, max_value=EXACT))
def test_integers_within_2_53_stay_exact_ints(number: int) -> None:
    back = convert.from_value(over_the_wire(convert.to_value(number)))
    assert type(back) is int
    assert back == number


def test_integral_doubles_become_ints_only_within_2_53() -> None:
    assert convert.from_value(struct_pb2.Value(number_value=3.0)) == 3
    assert type(convert.from_value(struct_pb2.Value(number_value=3.0))) is int
    assert type(convert.from_value(struct_pb2.Value(number_value=2.0**60))) is float
    assert type(convert.from_value(struct_pb2.Value(number_value=0.5))) is float
    assert math.copysign(1.0, convert.from_value(struct_pb2.Value(number_value=-0.0))) < 0


def test_integers_beyond_any_double_keep_their_digits() -> None:
    assert convert.to_value(10**400).string_value == str(10**400)


def test_nested_documents_convert_exactly() -> None:
    document = {"a": [1, 2.5, None, True, "x", {"b": []}], "c": {}, "d": -7}
    assert canonical(convert.from_value(convert.to_value(document))) == canonical(document)


def test_unset_value_is_none() -> None:
    assert convert.from_value(struct_pb2.Value()) is None
    assert convert.optional_value(pb.SubmitJobRequest(), "payload") is None


def test_non_json_objects_are_refused() -> None:
    with pytest.raises(TypeError):
        convert.to_value(object())


def test_timestamps_are_aware_utc() -> None:
    moment = datetime(2030, 5, 17, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=-4)))
    stamp = convert.to_timestamp(moment)
    assert stamp is not None
    request = pb.SubmitJobRequest(scheduled_for=stamp)
    back = convert.from_timestamp(request, "scheduled_for")
    assert back == moment
    assert back is not None and back.tzinfo is UTC
    assert convert.to_timestamp(None) is None
    assert convert.from_timestamp(pb.SubmitJobRequest(), "scheduled_for") is None


def test_out_of_range_timestamps_are_invalid_arguments() -> None:
    request = pb.SubmitJobRequest(scheduled_for=timestamp_pb2.Timestamp(seconds=10**12))
    with pytest.raises(ValidationFailed, match="scheduled_for"):
        convert.from_timestamp(request, "scheduled_for")


@pytest.mark.parametrize(
    ("model", "proto"),
    [(JobStatus, pb.JobStatus), (WorkerType, pb.WorkerType), (WorkerStatus, pb.WorkerStatus)],
)
def test_enums_map_by_declaration_order(model: Any, proto: Any) -> None:
    assert [member.name for member in model] == list(proto.keys())
    for member in model:
        number = convert.enum_to_proto(member)
        assert proto.Name(number) == member.name
        assert convert.enum_from_proto(model, number, "field") is member


def test_unknown_enum_numbers_are_invalid_arguments() -> None:
    with pytest.raises(ValidationFailed, match="worker_type"):
        convert.enum_from_proto(WorkerType, 17, "worker_type")


def test_submit_zeros_and_empty_strings_mean_defaults() -> None:
    args = convert.submit_job_args(pb.SubmitJobRequest(queue_id="", job_type="echo"))
    assert args == {
        "job_type": "echo",
        "payload": None,
        "queue_id": None,
        "queue_name": None,
        "priority": 0,
        "max_attempts": None,
        "scheduled_for": None,
        "idempotency_key": None,
    }


def test_page_zero_and_limit_zero_mean_first_page_of_ten() -> None:
    assert convert.page_args(pb.ListJobsRequest()) == {"page": 1, "limit": 10}
    assert convert.page_args(pb.ListJobsRequest(page=3, limit=7)) == {"page": 3, "limit": 7}


def test_status_filter_applies_when_not_pending_or_flagged() -> None:
    assert convert.list_jobs_args(pb.ListJobsRequest())["status"] is None
    assert (
        convert.list_jobs_args(pb.ListJobsRequest(status=pb.FAILED))["status"] is JobStatus.FAILED
    )
    flagged = pb.ListJobsRequest(status=pb.PENDING, filter_status=True)
    assert convert.list_jobs_args(flagged)["status"] is JobStatus.PENDING


def test_worker_filters_follow_the_same_rule() -> None:
    args = convert.list_workers_args(pb.ListWorkersRequest())
    assert args["worker_type"] is None and args["status"] is None
    args = convert.list_workers_args(
        pb.ListWorkersRequest(filter_worker_type=True, status=pb.DRAINING)
    )
    assert args["worker_type"] is WorkerType.GENERAL
    assert args["status"] is WorkerStatus.DRAINING


def test_update_without_mask_skips_empty_fields_but_applies_is_active() -> None:
    request = pb.UpdateQueueRequest(id="q", name="renamed")
    assert convert.update_queue_args(request) == {"name": "renamed", "is_active": False}


def test_update_with_mask_sets_exactly_the_masked_fields() -> None:
    request = pb.UpdateQueueRequest(
        id="q",
        name="ignored",
        update_mask=field_mask_pb2.FieldMask(paths=["description", "priority", "settings"]),
    )
    assert convert.update_queue_args(request) == {
        "description": None,
        "priority": 0,
        "settings": {},
    }


def test_update_mask_with_unknown_fields_is_invalid() -> None:
    request = pb.UpdateQueueRequest(update_mask=field_mask_pb2.FieldMask(paths=["colour"]))
    with pytest.raises(ValidationFailed, match="update_mask"):
        convert.update_queue_args(request)
