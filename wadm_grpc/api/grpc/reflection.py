"""Server reflection, v1 and v1alpha, resolving every symbol grpcurl and buf curl ask for."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_reflection.v1alpha import reflection_pb2 as rpb

log = logging.getLogger("wadm_grpc.reflection")

V1ALPHA = rpb.DESCRIPTOR.services_by_name["ServerReflection"].full_name
V1 = "grpc.reflection.v1.ServerReflection"
_METHOD = "ServerReflectionInfo"
# grpcio-reflection 1.85 ships only v1alpha. v1 is the same protocol under a new package (grpc-proto
# copied the file): same messages, same field numbers, so v1alpha's classes read and write v1's bytes.
_V1_FILE = "grpc/reflection/v1/reflection.proto"
_V1_PACKAGE = "grpc.reflection.v1"
# Unknown names are echoed back; a client-chosen name of any length is not worth repeating in full.
_ECHOED_NAME_CHARS = 200


def add_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serve reflection v1 and v1alpha on `server`, listing `service_names` and both reflection services."""
    pool = descriptor_pool.Default()
    _ensure_v1_descriptor(pool)
    servicer = ReflectionServicer(pool, (*service_names, V1, V1ALPHA))
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=rpb.ServerReflectionRequest.FromString,
        response_serializer=rpb.ServerReflectionResponse.SerializeToString,
    )
    for service in (V1, V1ALPHA):
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {_METHOD: handler}),))
        server.add_registered_method_handlers(service, {_METHOD: handler})


def _ensure_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    """Put the v1 reflection file in `pool` (once), so `describe grpc.reflection.v1.ServerReflection` works too."""
    try:
        pool.FindServiceByName(V1)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    rpb.DESCRIPTOR.CopyToProto(proto)
    old_prefix, new_prefix = f".{proto.package}.", f".{_V1_PACKAGE}."
    proto.name, proto.package = _V1_FILE, _V1_PACKAGE
    proto.options.java_package = "io.grpc.reflection.v1"
    proto.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    proto.options.ClearField("deprecated")  # v1alpha is the deprecated one
    for message in proto.message_type:
        for field in message.field:
            if field.type_name.startswith(old_prefix):
                field.type_name = new_prefix + field.type_name.removeprefix(old_prefix)
    for service in proto.service:
        for method in service.method:
            method.input_type = new_prefix + method.input_type.removeprefix(old_prefix)
            method.output_type = new_prefix + method.output_type.removeprefix(old_prefix)
    pool.AddSerializedFile(proto.SerializeToString())


class ReflectionServicer:
    """Answers ServerReflectionInfo streams from a descriptor pool.

    Beyond grpcio-reflection: methods resolve (upb's FindFileContainingSymbol misses them,
    grpc/grpc#34743), and so do enum values named after their enum as grpcurl 1.8 names them
    (`pkg.Enum.VALUE`; protobuf's own `pkg.VALUE` upb resolves); a file already sent on a stream is not
    sent again as a dependency (the protocol allows it; grpc-go does the same); a request that cannot
    be answered gets an error response and the stream goes on."""

    def __init__(self, pool: descriptor_pool.DescriptorPool, service_names: Iterable[str]) -> None:
        self._pool = pool
        self._service_names = tuple(sorted(set(service_names)))
        self._serialized: dict[str, bytes] = {}  # descriptors in a pool never change

    async def ServerReflectionInfo(
        self, requests: AsyncIterator[rpb.ServerReflectionRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[rpb.ServerReflectionResponse]:
        """One response per request, in order."""
        sent_files: set[str] = set()
        async for request in requests:
            try:
                response = self._answer(request, sent_files)
            except Exception:  # a descriptor the pool cannot render must not end the client's session
                log.exception("reflection request failed", extra={"request": str(request)[:_ECHOED_NAME_CHARS]})
                response = _error(grpc.StatusCode.INTERNAL, "reflection failed; see the server log")
            response.original_request.CopyFrom(request)
            yield response

    def _answer(self, request: rpb.ServerReflectionRequest, sent_files: set[str]) -> rpb.ServerReflectionResponse:
        asked = request.WhichOneof("message_request")
        if asked == "list_services":
            return rpb.ServerReflectionResponse(
                list_services_response=rpb.ListServiceResponse(
                    service=[rpb.ServiceResponse(name=name) for name in self._service_names]
                )
            )
        if asked == "file_by_filename":
            return self._files(self._file_named(request.file_by_filename), "file", request.file_by_filename, sent_files)
        if asked == "file_containing_symbol":
            symbol = request.file_containing_symbol
            return self._files(self._file_defining(symbol), "symbol", symbol, sent_files)
        if asked == "file_containing_extension":
            extension = request.file_containing_extension
            found = self._file_extending(extension.containing_type, extension.extension_number)
            return self._files(
                found, "extension", f"{extension.containing_type}({extension.extension_number})", sent_files
            )
        if asked == "all_extension_numbers_of_type":
            return self._extension_numbers(request.all_extension_numbers_of_type)
        return _error(grpc.StatusCode.INVALID_ARGUMENT, "the request names nothing to reflect on")

    def _file_named(self, name: str) -> FileDescriptor | None:
        try:
            return self._pool.FindFileByName(name)
        except KeyError:
            return None

    def _file_defining(self, symbol: str) -> FileDescriptor | None:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            pass
        try:
            return self._pool.FindMethodByName(symbol).containing_service.file
        except KeyError:
            pass
        # grpcurl (jhump/protoreflect) names enum values after their enum; protobuf scopes them beside it.
        enum_name, _, value = symbol.rpartition(".")
        try:
            enum = self._pool.FindEnumTypeByName(enum_name)
        except KeyError:
            return None
        return enum.file if value in enum.values_by_name else None

    def _file_extending(self, containing_type: str, number: int) -> FileDescriptor | None:
        try:
            message = self._pool.FindMessageTypeByName(containing_type)
            extension = self._pool.FindExtensionByNumber(message, number)
        except KeyError:
            return None
        defined_in: FileDescriptor = extension.file  # type: ignore[attr-defined]  # missing from the stubs
        return defined_in

    def _extension_numbers(self, containing_type: str) -> rpb.ServerReflectionResponse:
        try:
            message = self._pool.FindMessageTypeByName(containing_type)
        except KeyError:
            return _not_found("message type", containing_type)
        numbers = sorted(extension.number for extension in self._pool.FindAllExtensions(message))
        return rpb.ServerReflectionResponse(
            all_extension_numbers_response=rpb.ExtensionNumberResponse(
                base_type_name=message.full_name, extension_number=numbers
            )
        )

    def _files(
        self, file: FileDescriptor | None, kind: str, name: str, sent_files: set[str]
    ) -> rpb.ServerReflectionResponse:
        """`file` first (always), then those of its transitive dependencies not yet sent on this stream."""
        if file is None:
            return _not_found(kind, name)
        chosen = [file]
        names = {file.name}
        pending = list(file.dependencies)
        while pending:
            dependency = pending.pop()
            if dependency.name in sent_files or dependency.name in names:
                continue
            chosen.append(dependency)
            names.add(dependency.name)
            pending.extend(dependency.dependencies)
        response = rpb.ServerReflectionResponse(
            file_descriptor_response=rpb.FileDescriptorResponse(file_descriptor_proto=[self._bytes(f) for f in chosen])
        )
        sent_files.update(names)  # only once they are on their way
        return response

    def _bytes(self, file: FileDescriptor) -> bytes:
        serialized = self._serialized.get(file.name)
        if serialized is None:
            proto = descriptor_pb2.FileDescriptorProto()
            file.CopyToProto(proto)
            serialized = self._serialized[file.name] = proto.SerializeToString()
        return serialized


def _not_found(kind: str, name: str) -> rpb.ServerReflectionResponse:
    shown = name if len(name) <= _ECHOED_NAME_CHARS else name[:_ECHOED_NAME_CHARS] + "..."
    return _error(grpc.StatusCode.NOT_FOUND, f"{kind} not found: {shown}")


def _error(code: grpc.StatusCode, message: str) -> rpb.ServerReflectionResponse:
    number: int = code.value[0]
    return rpb.ServerReflectionResponse(error_response=rpb.ErrorResponse(error_code=number, error_message=message))
