/*
 * frontgate interop suite: starts Apache Iceberg's REST catalog test fixture (the server the
 * apache/iceberg-rest-fixture image runs: org.apache.iceberg.rest.RESTCatalogServer, from
 * iceberg-open-api's test fixtures) on a loopback address and a kernel-chosen port.
 *
 * RESTCatalogServer.main binds every interface on a fixed port (rest.port, default 8181); the
 * suite listens on 127.0.0.1 only and never on a guessed port. So this launcher runs the
 * fixture's own catalog initialization (RESTCatalogServer.initializeBackendCatalog: the CATALOG_*
 * environment variables, a JdbcCatalog on SQLite by default), the fixture's own request handling
 * (RESTServerCatalogAdapter in front of iceberg-core's RESTCatalogAdapter and RESTCatalogServlet)
 * and the same Jetty handler chain (servlet context at /*, gzip), and differs only in the
 * connector: host 127.0.0.1, port 0 unless rest.port is set. Once Jetty listens it prints
 *     iceberg-rest: listening on 127.0.0.1:<port>
 * on stdout. SIGTERM stops it (Jetty's shutdown hook).
 */
package org.apache.iceberg.rest;

import java.lang.reflect.Method;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import org.eclipse.jetty.server.handler.gzip.GzipHandler;
import org.eclipse.jetty.servlet.ServletContextHandler;
import org.eclipse.jetty.servlet.ServletHolder;

public final class LoopbackRESTCatalogServer {
  private LoopbackRESTCatalogServer() {}

  public static void main(String[] args) throws Exception {
    Method init = RESTCatalogServer.class.getDeclaredMethod("initializeBackendCatalog");
    init.setAccessible(true);
    RESTCatalogServer.CatalogContext ctx =
        (RESTCatalogServer.CatalogContext) init.invoke(new RESTCatalogServer());

    ServletContextHandler context = new ServletContextHandler(ServletContextHandler.NO_SESSIONS);
    context.addServlet(
        new ServletHolder(new RESTCatalogServlet(new RESTServerCatalogAdapter(ctx))), "/*");
    context.insertHandler(new GzipHandler());

    Server server = new Server();
    ServerConnector connector = new ServerConnector(server);
    connector.setHost("127.0.0.1");
    connector.setPort(Integer.parseInt(ctx.configuration().getOrDefault(RESTCatalogServer.REST_PORT, "0")));
    server.addConnector(connector);
    server.setHandler(context);
    server.setStopAtShutdown(true);
    server.start();
    System.out.println("iceberg-rest: listening on 127.0.0.1:" + connector.getLocalPort());
    System.out.flush();
    server.join();
  }
}
