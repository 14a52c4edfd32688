"""Hypothesis strategies for any protobuf message, built from its descriptor: every field may be
set or not, to any value its wire type allows (full integer ranges, unknown enum numbers, control
characters, raw Duration seconds and nanos that are out of range), at most one member of each
oneof. Strings are drawn half of the time from `known` (ids that exist), so that generated
requests reach past "not found"."""

from collections.abc import Sequence
from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

MAX_DEPTH = 3  # nested messages deeper than this stay unset
MAX_REPEATED = 6

_INTEGERS = {
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
}


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    # Small values reach the logic; extremes reach the bounds.
    return st.one_of(
        st.integers(max(low, -3), min(high, 40)),
        st.sampled_from(sorted({low, high, max(low, 2**31 - 1), min(high, 2**31)})),
        st.integers(low, high),
    )


def _strings(known: Sequence[str]) -> st.SearchStrategy[str]:
    options = [
        st.text(alphabet="ab12-_.:#", min_size=1, max_size=8),  # plausible ids, new ones
        st.text(max_size=12),  # any character, control characters and NUL included
        st.text(min_size=100, max_size=300),
    ]
    if known:
        options.insert(0, st.sampled_from(known))
        options.insert(0, st.sampled_from(known))
    return st.one_of(*options)


def _scalar(field: FieldDescriptor, known: Sequence[str], depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        return messages(field.message_type, known, depth + 1)
    if field.type == FieldDescriptor.TYPE_STRING:
        return _strings(known)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=32)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        numbers = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(numbers), st.integers(-(2**31), 2**31 - 1))
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=32 if field.type == FieldDescriptor.TYPE_FLOAT else 64)
    return _integers(*_INTEGERS[field.type])


def _value(field: FieldDescriptor, known: Sequence[str], depth: int) -> st.SearchStrategy[Any]:
    scalar = _scalar(field, known, depth)
    if field.is_repeated:
        if field.type == FieldDescriptor.TYPE_STRING and known:
            # Lists of real ids (seats, mostly) are what reach the scripts.
            ids = st.lists(st.sampled_from(known), max_size=MAX_REPEATED)
            return st.one_of(ids, st.lists(scalar, max_size=MAX_REPEATED))
        return st.lists(scalar, max_size=MAX_REPEATED)
    return scalar


def _member(
    field: FieldDescriptor, known: Sequence[str], depth: int
) -> st.SearchStrategy[dict[str, Any]]:
    return _value(field, known, depth).map(lambda value: {field.name: value})


def messages(
    descriptor: Descriptor, known: Sequence[str] = (), depth: int = 0
) -> st.SearchStrategy[Message]:
    """Messages of `descriptor`'s type with any subset of their fields set."""
    message_class = GetMessageClass(descriptor)
    if depth > MAX_DEPTH:
        return st.just(message_class())
    plain = {
        field.name: _value(field, known, depth)
        for field in descriptor.fields
        if field.containing_oneof is None or field.containing_oneof.name.startswith("_")
    }
    oneofs = [
        st.one_of(
            st.just({}),
            *(_member(field, known, depth) for field in oneof.fields),
        )
        for oneof in descriptor.oneofs
        if not oneof.name.startswith("_")  # proto3 `optional` fields sit in synthetic oneofs
    ]

    def build(parts: tuple[dict[str, Any], ...]) -> Message:
        fields: dict[str, Any] = {}
        for part in parts:
            fields.update(part)
        return message_class(**fields)

    return st.tuples(st.fixed_dictionaries({}, optional=plain), *oneofs).map(build)


def _copy_field(target: Message, source: Message, field: FieldDescriptor) -> None:
    name = field.name
    if field.is_repeated:
        target.ClearField(name)
        getattr(target, name).extend(getattr(source, name))
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        if source.HasField(name):
            getattr(target, name).CopyFrom(getattr(source, name))
        else:
            target.ClearField(name)
    elif field.has_presence and not source.HasField(name):
        target.ClearField(name)
    else:
        setattr(target, name, getattr(source, name))


def near(template: Message, known: Sequence[str] = ()) -> st.SearchStrategy[Message]:
    """A valid request with one to three of its fields replaced by generated ones (or cleared):
    what reaches the checks past the first."""
    descriptor = cast(Descriptor, template.DESCRIPTOR)  # the upb descriptor is the same API
    every: list[FieldDescriptor] = list(descriptor.fields)
    fields = st.lists(st.sampled_from(every), min_size=1, max_size=3, unique=True)

    def mutate(parts: tuple[Message, list[FieldDescriptor]]) -> Message:
        generated, replaced = parts
        mutated = type(template)()
        mutated.CopyFrom(template)
        for field in replaced:
            _copy_field(mutated, generated, field)
        return mutated

    return st.tuples(messages(descriptor, known), fields).map(mutate)
