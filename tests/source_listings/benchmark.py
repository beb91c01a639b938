# Source: 1.5 実践: 画像分類APIの構築 — 「パフォーマンス測定」, benchmark.py
# The source's listing as printed, indentation restored (it was lost in transfer); nothing else changed.
# benchmark.py - APIパフォーマンス測定
import requests
import time
import numpy as np
from PIL import Image
import io

API_URL = "http://localhost:8000/predict"

def create_test_image():
    """テスト用ダミー画像作成"""
    img = Image.new('RGB', (224, 224), color='red')
    buf = io.BytesIO()
    img.save(buf, format='JPEG')
    buf.seek(0)
    return buf

def benchmark_api(num_requests=100):
    """API性能測定"""
    latencies = []

    print(f"{num_requests}回のリクエストを送信中...")

    for i in range(num_requests):
        image_file = create_test_image()
        files = {'file': ('test.jpg', image_file, 'image/jpeg')}

        start = time.time()
        response = requests.post(API_URL, files=files)
        latency = (time.time() - start) * 1000

        if response.status_code == 200:
            latencies.append(latency)
        else:
            print(f"エラー: {response.status_code}")

        if (i + 1) % 10 == 0:
            print(f" 進捗: {i + 1}/{num_requests}")

    # 統計
    latencies = np.array(latencies)

    print("\n=== パフォーマンス統計 ===")
    print(f"リクエスト数: {len(latencies)}")
    print(f"平均レイテンシ: {latencies.mean():.2f} ms")
    print(f"中央値: {np.median(latencies):.2f} ms")
    print(f"最小: {latencies.min():.2f} ms")
    print(f"最大: {latencies.max():.2f} ms")
    print(f"標準偏差: {latencies.std():.2f} ms")
    print(f"P95: {np.percentile(latencies, 95):.2f} ms")
    print(f"P99: {np.percentile(latencies, 99):.2f} ms")

if __name__ == "__main__":
    benchmark_api(num_requests=100)
