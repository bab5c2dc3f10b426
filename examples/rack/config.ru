# A Rack application with only the standard library: `corral serve examples/rack`
# (engine ruby.rack: rackup over HTTP on the port Corral gives it).
require "json"

run lambda { |env|
  request_body = env["rack.input"].read
  case env["PATH_INFO"]
  when "/env.json"
    keys = %w[REQUEST_METHOD SCRIPT_NAME PATH_INFO QUERY_STRING SERVER_NAME HTTP_HOST
              HTTP_X_FORWARDED_FOR RACK_ENV]
    seen = keys.to_h { |key| [key, env[key] || ENV[key]] }
    seen["body_bytes"] = request_body.bytesize
    seen["pid"] = Process.pid
    [200, { "content-type" => "application/json" }, [JSON.generate(seen), "\n"]]
  else
    [200, { "content-type" => "text/plain" }, ["Hello from Rack on Ruby #{RUBY_VERSION}\n"]]
  end
}
