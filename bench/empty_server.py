"""The framework's floor: InventoryService whose Hold answers an empty HoldResponse at once.

Served the way `lml-inventory serve` serves the real one (grpc.aio on uvloop, SO_REUSEPORT
worker processes), so the service harness can compare the two under the same load.
"""

import multiprocessing
import signal

import click
import grpc
import uvloop
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc


class EmptyServicer(pb_grpc.InventoryServiceServicer):
    async def Hold(
        self,
        request: pb.HoldRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.HoldResponse:
        return pb.HoldResponse()


async def _serve(listen: str) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    # Only Hold is served: the other methods keep the generated base's UNIMPLEMENTED answer.
    servicer = EmptyServicer()  # type: ignore[abstract]
    pb_grpc.add_InventoryServiceServicer_to_server(servicer, server)
    server.add_insecure_port(listen)
    await server.start()
    await server.wait_for_termination()


def _serve_process(listen: str) -> None:
    uvloop.run(_serve(listen))


@click.command()
@click.option("--listen", default="127.0.0.1:50052", show_default=True)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1))
def main(listen: str, workers: int) -> None:
    """Serve the empty InventoryService until terminated."""
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_serve_process, args=(listen,)) for _ in range(workers)]
    for process in processes:
        process.start()

    def stop(_signum: int, _frame: object) -> None:
        for process in processes:
            process.terminate()

    # Without this, SIGTERM would end only this parent and leave the workers serving.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for process in processes:
        process.join()


if __name__ == "__main__":
    main()
