/*
 * RDMA backend: async events of the device (ibv_get_async_event). QP errors
 * fail their connection (first flushed request: FX_WC_REM_OP_ERR); CQ errors
 * and a fatal device error fail every connection of the context; COMM_EST is
 * passed to librdmacm (rdma_notify). The async fd belongs to librdmacm's
 * ibv_context and is shared by every context on the device: an event for a
 * QP of another context is recorded on that connection (atomically) and
 * acted on by its own context (check_timeouts).
 */
#include "dataplane/common/ferry_log.h"
#include "dataplane/transport/rdma/rdma.h"

void rdma_handle_async(struct rdma_ctx *ctx)
{
	struct ibv_async_event ev;

	for (int budget = 32; budget > 0 && ibv_get_async_event(ctx->verbs, &ev) == 0; budget--) {
		switch (ev.event_type) {
		case IBV_EVENT_QP_FATAL:
		case IBV_EVENT_QP_REQ_ERR:
		case IBV_EVENT_QP_ACCESS_ERR: {
			struct rdma_conn *c = ev.element.qp->qp_context;

			if (c && c->ctx == ctx)
				rdma_conn_fail(c, FX_WC_REM_OP_ERR, "queue pair to %s failed: %s", c->base.peer,
					       ibv_event_type_str(ev.event_type));
			else if (c)
				__atomic_store_n(&c->async_pending, (int)ev.event_type, __ATOMIC_RELEASE);
			break;
		}
		case IBV_EVENT_COMM_EST: {
			struct rdma_conn *c = ev.element.qp->qp_context;

			if (c && c->ctx == ctx && c->id)
				(void)rdma_notify(c->id, IBV_EVENT_COMM_EST);
			break;
		}
		case IBV_EVENT_CQ_ERR:
		case IBV_EVENT_DEVICE_FATAL: {
			struct fx_link *l, *nx;

			LOG_ERR("rdma: %s on %s: failing every connection", ibv_event_type_str(ev.event_type),
				ctx->devname);
			for (l = ctx->conns.next; l != &ctx->conns; l = nx) {
				nx = l->next;
				rdma_conn_fail(fx_container_of(l, struct rdma_conn, l_all), FX_WC_GENERAL_ERR,
					       "device %s: %s", ctx->devname, ibv_event_type_str(ev.event_type));
			}
			break;
		}
		default:
			LOG_DEBUG("rdma: async event %s", ibv_event_type_str(ev.event_type));
			break;
		}
		ibv_ack_async_event(&ev);
	}
}
